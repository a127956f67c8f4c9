"""Test helpers shared by the suites: a real server process, a loopback webhook receiver."""
