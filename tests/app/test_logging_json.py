"""Structured logs: one JSON object per line with the structured fields, and never key material."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.core.note import Signer
from ledger.app.logjson import REDACTED, JsonFormatter, TextFormatter, configure_logging, scrub
from tests.servers import running_server


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("json", "DEBUG", stream)
    try:
        yield logging.getLogger("ledger.test"), stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_object_per_line_with_core_and_extra_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    log.info("integrated %d entries", 3, extra={"tree_size": 42, "index": 41, "record_id": "ab" * 32,
                                                  "raw": b"\x01\x02", "path": Path("/x")})
    log.debug("second\nline")
    first, second = _lines(stream)
    assert first["level"] == "INFO" and first["logger"] == "ledger.test"
    assert first["message"] == "integrated 3 entries"
    assert first["tree_size"] == 42 and first["index"] == 41 and first["record_id"] == "ab" * 32
    assert first["raw"] == "0102" and first["path"] == "/x"
    assert isinstance(first["time"], str) and first["time"].endswith("Z") and "T" in first["time"]
    assert second["message"] == "second\nline"  # newlines stay inside the JSON string


def test_exception_is_a_field(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"tree_size": 7})
    (line,) = _lines(stream)
    assert line["level"] == "ERROR" and "RuntimeError: boom" in str(line["exception"]) and line["tree_size"] == 7


def test_core_fields_are_not_overwritten(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    log.info("real", extra={"level_hint": "x", "time_ms": 3})
    (line,) = _lines(stream)
    assert line["message"] == "real" and line["level"] == "INFO" and line["time_ms"] == 3


def test_key_material_never_printed(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    secret = Signer.generate("example.com/log").private_text()
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----"
    log.warning("loaded %s", secret, extra={"private_key": "anything", "signing_secret": 1, "note": secret,
                                            "pem": pem, "blob": secret.encode()})
    log.error("pem in message: %s", pem)
    out = stream.getvalue()
    assert "PRIVATE+KEY" not in out and "MIGHAgEA" not in out
    first, second = _lines(stream)
    assert first["private_key"] == REDACTED and first["signing_secret"] == REDACTED
    assert first["note"] == REDACTED and first["pem"] == REDACTED and first["blob"] == REDACTED
    assert first["message"] == f"loaded {REDACTED}"
    assert second["message"] == f"pem in message: {REDACTED}"


def test_scrub_leaves_ordinary_text() -> None:
    text = "tree_size=3 key_id=abcd verifier example.com/log+abcd1234+AQ=="
    assert scrub(text) == text


def test_text_format_shows_extra_fields() -> None:
    record = logging.LogRecord("ledger.log.sequencer", logging.INFO, __file__, 1, "log opened", None, None)
    record.tree_size = 5
    record.origin = "a b"
    line = TextFormatter().format(record)
    assert line.endswith('INFO ledger.log.sequencer: log opened tree_size=5 origin="a b"')
    assert json.loads(JsonFormatter().format(record))["tree_size"] == 5


def test_serve_logs_json_lines_with_tree_size_and_record_ids(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", ["--log-format", "json", "--log-level", "DEBUG"]) as srv:
        with srv.client() as c:
            added = c.add_entries([b"logged entry"], wait_for_checkpoint=True)
        assert srv.stop() == 0
        text = srv.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("message") == "log opened" and line.get("tree_size") == 0 for line in lines)
    assert any(line.get("message") == "log closed" and line.get("tree_size") == 1 for line in lines)
    record_id = added.entries[0].leaf_hash.hex()
    assert any(line.get("record_id") == record_id and line.get("index") == 0 for line in lines)
    assert "PRIVATE+KEY" not in text
    assert (tmp_path / "data" / "log.key").read_text() not in text


def test_native_lines_become_records() -> None:
    from ledger.app.logjson import native_record

    level, message, fields = native_record(
        "I1127 13:56:28.329091   24138 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL")
    assert (level, message, fields) == (logging.INFO, "Handshake failed with error SSL_ERROR_SSL",
                                        {"source": "ssl_transport_security.cc:2563"})
    assert native_record("E0101 00:00:00.000000 1 x.cc:1] bad")[0] == logging.ERROR
    assert native_record("Traceback (most recent call last):") == (logging.WARNING,
                                                                    "Traceback (most recent call last):", {})


def test_what_c_code_writes_to_stderr_is_json_too() -> None:
    import subprocess
    import sys

    code = (
        "import os, sys, time, logging\n"
        "from ledger.app.serve import configure_logging\n"
        "configure_logging('json', 'INFO')\n"
        "os.write(2, b'W1127 13:00:00.000000 1 chttp2_transport.cc:1] too_many_pings\\n')\n"
        "print('a stray line', file=sys.stderr)\n"
        "logging.getLogger('ledger.x').info('python', extra={'tree_size': 3})\n"
        "time.sleep(0.3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    by_message = {line["message"]: line for line in lines}
    assert by_message["too_many_pings"]["level"] == "WARNING"
    assert by_message["too_many_pings"]["logger"] == "native"
    assert by_message["too_many_pings"]["source"] == "chttp2_transport.cc:1"
    assert by_message["a stray line"]["logger"] == "native"
    assert by_message["python"]["tree_size"] == 3
