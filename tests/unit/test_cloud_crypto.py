"""Cloud API credentials sealed at rest: nothing readable is stored, a wrong key cannot open them."""

from __future__ import annotations

import pytest

from tests.support import cloud_payloads as fx
from wahub.engines.cloud import crypto
from wahub.engines.cloud.account import CloudAccount
from wahub.engines.cloud.polls import PollTemplate

ACCOUNT = CloudAccount(phone_number_id=fx.PHONE_NUMBER_ID, waba_id=fx.WABA_ID, access_token=fx.ACCESS_TOKEN,
                       app_secret=fx.APP_SECRET, verify_token=fx.VERIFY_TOKEN,
                       poll_template=PollTemplate("order_confirmation", "en", ("#1001",)))


def test_sealed_credentials_open_again_and_hide_every_secret() -> None:
    cipher = crypto.CredentialsCipher(crypto.generate_key())
    sealed = cipher.seal(ACCOUNT)
    for secret in (fx.ACCESS_TOKEN, fx.APP_SECRET, fx.VERIFY_TOKEN, fx.PHONE_NUMBER_ID):
        assert secret not in sealed
    assert cipher.open(sealed) == ACCOUNT


def test_a_wrong_key_or_a_tampered_value_does_not_open() -> None:
    sealed = crypto.CredentialsCipher(crypto.generate_key()).seal(ACCOUNT)
    with pytest.raises(crypto.CredentialsKeyError):
        crypto.CredentialsCipher(crypto.generate_key()).open(sealed)
    cipher = crypto.CredentialsCipher(crypto.generate_key())
    sealed = cipher.seal(ACCOUNT)
    with pytest.raises(crypto.CredentialsKeyError):
        cipher.open(sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:])


def test_key_rotation_old_values_open_and_reseal_with_the_new_key() -> None:
    old, new = crypto.generate_key(), crypto.generate_key()
    sealed = crypto.CredentialsCipher(old).seal(ACCOUNT)
    both = crypto.CredentialsCipher(f"{new},{old}")
    resealed = both.rotate(sealed)
    assert crypto.CredentialsCipher(new).open(resealed) == ACCOUNT


@pytest.mark.parametrize("keys", ["", " , ", "not-a-key"])
def test_missing_or_malformed_key_setting_is_refused(keys: str) -> None:
    with pytest.raises(crypto.CredentialsKeyError, match="WAHUB_CLOUD_CREDENTIALS_KEY"):
        crypto.CredentialsCipher(keys)


def test_secrets_never_show_in_repr_or_public_shape() -> None:
    for text in (repr(ACCOUNT), str(ACCOUNT.public_json())):
        for secret in (fx.ACCESS_TOKEN, fx.APP_SECRET, fx.VERIFY_TOKEN):
            assert secret not in text


@pytest.mark.parametrize(("field", "value"), [("accessToken", ""), ("phoneNumberId", "abc"), ("appSecret", None)])
def test_account_input_names_the_bad_field(field: str, value: object) -> None:
    data = {**ACCOUNT.to_json(), field: value}
    with pytest.raises(ValueError, match=f"cloud.{field}"):
        CloudAccount.from_json(data)
