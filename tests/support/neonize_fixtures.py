"""Real neonize 0.5.2 protobuf events built offline, shaped the way neonize's Go core fills them.

Importing this module imports neonize (and sets ``NEONIZE_BOT_TAG=off`` first); nothing here
touches the network.
"""
# ruff: noqa: E402, E501
from __future__ import annotations

import hashlib
import io
import os
import time

os.environ.setdefault("NEONIZE_BOT_TAG", "off")


def _closing_popen(cmd: str, *args: object, **kwargs: object) -> io.StringIO:
    with _real_popen(cmd, *args, **kwargs) as pipe:  # type: ignore[arg-type]
        return io.StringIO(pipe.read())


# neonize's import runs os.popen("uname -a") and never closes the pipe (a ResourceWarning later, in
# whichever test happens to reap it): hand it a pipe that is read and closed at once.
_real_popen = os.popen
os.popen = _closing_popen  # type: ignore[assignment]
try:
    import neonize  # noqa: F401
finally:
    os.popen = _real_popen

os.environ.setdefault("NEONIZE_BOT_TAG", "off")
from neonize.events import (
    ConnectedEv,
    DisconnectedEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    QREv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import JID, AddressingMode, ConnectFailureReason, MessageInfo, MessageSource
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContactMessage,
    ContactsArrayMessage,
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    FutureProofMessage,
    ImageMessage,
    LocationMessage,
    Message,
    MessageContextInfo,
    PollCreationMessage,
    PollEncValue,
    PollUpdateMessage,
    PollVoteMessage,
    ProtocolMessage,
    ReactionMessage,
    StickerMessage,
    VideoMessage,
)


def jid(user, server="s.whatsapp.net", device=0):
    return JID(User=user, Server=server, RawAgent=0, Device=device, Integrator=0, IsEmpty=False)
EMPTY = JID(User="", Server="", RawAgent=0, Device=0, Integrator=0, IsEmpty=True)

def source(sender, chat=None, sender_alt=EMPTY, from_me=False, group=False):
    return MessageSource(Chat=chat or sender, Sender=sender, IsFromMe=from_me, IsGroup=group,
                         SenderAlt=sender_alt, RecipientAlt=EMPTY, BroadcastListOwner=EMPTY,
                         AddressingMode=AddressingMode.Value("LID" if sender.Server == "lid" else "PN"))

def message_ev(msg, src, msg_id="3EB0AAAA", ts_ms=None, pushname="Alice"):
    info = MessageInfo(MessageSource=src, ID=msg_id, ServerID=0, Type="text", Pushname=pushname,
                       Timestamp=ts_ms if ts_ms is not None else int(time.time() * 1000),
                       Category="", Multicast=False, MediaType="", Edit="")
    return MessageEv(Info=info, Message=msg, IsEphemeral=False, IsViewOnce=False, IsViewOnceV2=False,
                     IsViewOnceV2Extension=False, IsDocumentWithCaption=False, IsLottieSticker=False,
                     IsEdit=False, UnavailableRequestID="", RetryCount=0)

# @lid sender with phone-number alternative
LID = jid("123456789012345", "lid")
PN = jid("15551234567")
text_ev = message_ev(Message(conversation="hello"), source(LID, sender_alt=PN))
ext_ev = message_ev(Message(extendedTextMessage=ExtendedTextMessage(text="hi there")), source(PN))

OPTIONS = ["Pizza", "Sushi"]
poll_msg = Message(
    messageContextInfo=MessageContextInfo(messageSecret=os.urandom(32)),
    pollCreationMessage=PollCreationMessage(
        name="Lunch?", selectableOptionsCount=1,
        options=[PollCreationMessage.Option(optionName=o) for o in OPTIONS]))
poll_ev = message_ev(poll_msg, source(PN, from_me=True), msg_id="3EB0POLL")

poll_update_ev = message_ev(Message(pollUpdateMessage=PollUpdateMessage(
    pollCreationMessageKey=MessageKey(remoteJID="15551234567@s.whatsapp.net", fromMe=True, ID="3EB0POLL"),
    vote=PollEncValue(encPayload=os.urandom(48), encIV=os.urandom(12)),
    senderTimestampMS=int(time.time() * 1000))), source(LID, sender_alt=PN), msg_id="3EB0VOTE")
# what decrypt_poll_vote returns (WAWebProtobufsE2E.PollVoteMessage):
decrypted_vote = PollVoteMessage(selectedOptions=[hashlib.sha256(b"Sushi").digest()])

receipt_ev = ReceiptEv(MessageSource=source(LID, sender_alt=PN), MessageIDs=["3EB0A", "3EB0B", "3EB0C"],
                       Timestamp=int(time.time()), Type=ReceiptEv.READ)
logged_out_ev = LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.Value("LOGGED_OUT"))
temp_ban_ev = TemporaryBanEv(Code=TemporaryBanEv.SEND_TO_TOO_MANY_PEOPLE, Expire=3600)
connected_ev = ConnectedEv(status=True)
disconnected_ev = DisconnectedEv(status=True)
qr_ev = QREv(Codes=["2@aaa,bbb,ccc,ddd", "2@eee,fff,ggg,hhh"])
pair_ok_ev = PairStatusEv(ID=PN, BusinessName="", Platform="android", Status=PairStatusEv.SUCCESS)
stream_replaced_ev = StreamReplacedEv()
# Every inbound kind a customer can send, shaped like WhatsApp's (media keys/paths present, no bytes)
_MEDIA = dict(URL="https://mmg.whatsapp.net/x", directPath="/v/t62/x", mediaKey=b"k" * 32,
              fileSHA256=b"s" * 32, fileEncSHA256=b"e" * 32, fileLength=4096, mediaKeyTimestamp=1_767_225_600)
VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Bob Courier\nTEL;type=CELL;waid=15557654321:+1 555 765 4321\nEND:VCARD"
image_ev = message_ev(Message(imageMessage=ImageMessage(mimetype="image/jpeg", caption="parcel arrived broken",
                                                       height=800, width=600, **_MEDIA)), source(PN), "3EB0IMG")
ptt_ev = message_ev(Message(audioMessage=AudioMessage(mimetype="audio/ogg; codecs=opus", seconds=7, PTT=True,
                                                      **_MEDIA)), source(PN), "3EB0PTT")
audio_ev = message_ev(Message(audioMessage=AudioMessage(mimetype="audio/mpeg", seconds=180, PTT=False, **_MEDIA)),
                      source(PN), "3EB0AUD")
video_ev = message_ev(Message(videoMessage=VideoMessage(mimetype="video/mp4", caption="unboxing", seconds=12,
                                                       **_MEDIA)), source(PN), "3EB0VID")
document_ev = message_ev(Message(documentWithCaptionMessage=FutureProofMessage(message=Message(
    documentMessage=DocumentMessage(mimetype="application/pdf", fileName="invoice-1001.pdf", title="invoice-1001",
                                    caption="my invoice", pageCount=1, **_MEDIA)))), source(PN), "3EB0DOC")
sticker_ev = message_ev(Message(stickerMessage=StickerMessage(mimetype="image/webp", isAnimated=False, **_MEDIA)),
                        source(PN), "3EB0STK")
vcard_ev = message_ev(Message(contactMessage=ContactMessage(displayName="Bob Courier", vcard=VCARD)),
                      source(PN), "3EB0VCF")
contacts_ev = message_ev(Message(contactsArrayMessage=ContactsArrayMessage(displayName="2 contacts", contacts=[
    ContactMessage(displayName="Bob", vcard=VCARD), ContactMessage(displayName="Eve", vcard=VCARD)])),
    source(PN), "3EB0VCS")
location_ev = message_ev(Message(locationMessage=LocationMessage(
    degreesLatitude=30.0444, degreesLongitude=31.2357, name="Tahrir Square", address="Cairo, Egypt")),
    source(PN), "3EB0LOC")
reaction_ev = message_ev(Message(reactionMessage=ReactionMessage(
    key=MessageKey(remoteJID="15551234567@s.whatsapp.net", fromMe=True, ID="3EB0ORDER"), text="👍",
    senderTimestampMS=1_767_225_601_000)), source(PN), "3EB0REACT")
edit_ev = message_ev(Message(editedMessage=FutureProofMessage(message=Message(protocolMessage=ProtocolMessage(
    key=MessageKey(remoteJID="15551234567@s.whatsapp.net", fromMe=False, ID="3EB0ORIG"),
    type=ProtocolMessage.MESSAGE_EDIT, editedMessage=Message(conversation="actually CANCEL my order"),
    timestampMS=1_767_225_602_000)))), source(PN), "3EB0EDIT")
revoke_ev = message_ev(Message(protocolMessage=ProtocolMessage(
    key=MessageKey(remoteJID="15551234567@s.whatsapp.net", fromMe=False, ID="3EB0ORIG"),
    type=ProtocolMessage.REVOKE)), source(PN), "3EB0DEL")
reply_ev = message_ev(Message(extendedTextMessage=ExtendedTextMessage(text="Confirm", contextInfo=ContextInfo(
    stanzaID="3EB0POLL", participant="15550001111@s.whatsapp.net",
    quotedMessage=Message(conversation="Order #1001: confirm?")))), source(PN), "3EB0REPLY")
ALL = [text_ev, ext_ev, poll_ev, poll_update_ev, receipt_ev, logged_out_ev, temp_ban_ev,
       connected_ev, disconnected_ev, qr_ev, pair_ok_ev, stream_replaced_ev]
