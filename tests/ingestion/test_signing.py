"""Standard Webhooks signing, as pure functions."""
import base64
import hashlib
import hmac

import pytest

from ingestion.signing import VerificationError, sign, signed_headers, verify

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
NOW = 1_800_000_000
BODY = b'{"specversion":"1.0"}'


def test_signature_is_hmac_sha256_of_id_timestamp_body_with_decoded_key():
    expected = base64.b64encode(
        hmac.new(b"k" * 32, b"msg_1.1800000000." + BODY, hashlib.sha256).digest()).decode()
    assert sign(SECRET, "msg_1", NOW, BODY) == "v1," + expected


def test_valid_signature_verifies():
    headers = signed_headers(SECRET, "msg_1", BODY, timestamp=NOW)
    verify([SECRET], "msg_1", headers["webhook-timestamp"], headers["webhook-signature"], BODY,
           now=NOW)


def test_tampered_body_is_rejected():
    headers = signed_headers(SECRET, "msg_1", BODY, timestamp=NOW)
    with pytest.raises(VerificationError):
        verify([SECRET], "msg_1", str(NOW), headers["webhook-signature"], BODY + b" ", now=NOW)


def test_tampered_id_is_rejected():
    headers = signed_headers(SECRET, "msg_1", BODY, timestamp=NOW)
    with pytest.raises(VerificationError):
        verify([SECRET], "msg_2", str(NOW), headers["webhook-signature"], BODY, now=NOW)


def test_wrong_secret_is_rejected():
    headers = signed_headers(OTHER, "msg_1", BODY, timestamp=NOW)
    with pytest.raises(VerificationError):
        verify([SECRET], "msg_1", str(NOW), headers["webhook-signature"], BODY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_timestamp_more_than_five_minutes_away_is_rejected(offset):
    headers = signed_headers(SECRET, "msg_1", BODY, timestamp=NOW + offset)
    with pytest.raises(VerificationError):
        verify([SECRET], "msg_1", headers["webhook-timestamp"], headers["webhook-signature"],
               BODY, now=NOW)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamp_within_five_minutes_is_accepted(offset):
    headers = signed_headers(SECRET, "msg_1", BODY, timestamp=NOW + offset)
    verify([SECRET], "msg_1", headers["webhook-timestamp"], headers["webhook-signature"], BODY,
           now=NOW)


def test_rotated_secret_either_active_secret_verifies():
    old = signed_headers(OTHER, "msg_1", BODY, timestamp=NOW)["webhook-signature"]
    new = signed_headers(SECRET, "msg_1", BODY, timestamp=NOW)["webhook-signature"]
    verify([SECRET, OTHER], "msg_1", str(NOW), old, BODY, now=NOW)
    verify([SECRET, OTHER], "msg_1", str(NOW), new, BODY, now=NOW)


def test_one_matching_signature_among_several_verifies():
    good = sign(SECRET, "msg_1", NOW, BODY)
    header = f"v1,AAAA {good} v2,ignored"
    verify([SECRET], "msg_1", str(NOW), header, BODY, now=NOW)


@pytest.mark.parametrize("msg_id,timestamp,signature", [
    (None, str(NOW), "v1,x"), ("m", None, "v1,x"), ("m", str(NOW), None),
    ("m", "not-a-number", "v1,x"), ("m", str(NOW), "v1"), ("m", str(NOW), "garbage"),
])
def test_missing_or_malformed_headers_are_rejected(msg_id, timestamp, signature):
    with pytest.raises(VerificationError):
        verify([SECRET], msg_id, timestamp, signature, BODY, now=NOW)


# --- Svix's header names ------------------------------------------------------------------
def test_svix_header_names_are_read_as_the_standard_ones():
    from ingestion.signing import signature_headers

    assert signature_headers({"svix-id": "m", "svix-timestamp": "1", "svix-signature": "v1,x"}
                             ) == ("m", "1", "v1,x")
    assert signature_headers({"webhook-id": "w", "webhook-timestamp": "2",
                              "webhook-signature": "v1,y", "svix-id": "m"}) == ("w", "2", "v1,y")


def test_a_set_of_headers_is_taken_whole_never_mixed():
    from ingestion.signing import signature_headers

    mixed = {"webhook-id": "w", "webhook-timestamp": "2", "svix-signature": "v1,x"}
    assert None in signature_headers(mixed)
