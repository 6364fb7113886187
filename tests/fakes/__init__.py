"""Test doubles shared by the test suite (e.g. the recording fake Graph API server)."""
