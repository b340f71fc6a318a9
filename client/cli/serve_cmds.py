"""Server commands: ``serve`` (run the log and registry over gRPC), ``backup`` (copy a data dir), ``fsck``.

Thin: parse flags into :class:`ledger.app.config.ServerConfig` fields and hand over to
``ledger/app/serve.py`` / ``ledger/app/backup.py`` / ``ledger/app/fsck.py``, imported inside the
handlers (the only places the client CLI reaches into the server package). Flags are documented in
``docs/operations.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from client.cli._connect import DEFAULT_SERVER
from client.cli.log_cmds import DEFAULT_DATA, _size_arg


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("serve", help="serve the log over gRPC until SIGTERM/SIGINT")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="data directory")
    p.add_argument("--store", default=None, metavar="SPEC",
                   help="the log's store if not DATA/log.rocksdb: postgresql://USER[:PASSWORD]@HOST:PORT/DB "
                        "(the key and origin files stay in --data; docs/operations.md)")
    p.add_argument("--listen", default=DEFAULT_SERVER, metavar="HOST:PORT")
    p.add_argument("--origin", default=None,
                   help="log name (default: the data dir's, else the --key's name, else a unique "
                        "HOST/provenance-ledger/HEX kept in DATA/origin)")
    p.add_argument("--key", type=Path, default=None, metavar="FILE", help="signing key (default DATA/log.key)")
    p.add_argument("--max-entry-bytes", type=_size_arg, default=None, metavar="N")
    p.add_argument("--max-batch-entries", type=_size_arg, default=None, metavar="N")
    p.add_argument("--max-receive-bytes", type=_size_arg, default=None, metavar="N")
    p.add_argument("--max-manifest-bytes", type=_size_arg, default=None, metavar="N",
                   help="registry: largest manifest accepted by UploadManifest (default 2 GiB; spooled to "
                        "files in TMPDIR, up to twice this in total)")
    p.add_argument("--drain-seconds", type=float, default=None, metavar="S")
    p.add_argument("--allowlist", type=Path, default=None, metavar="FILE",
                   help="registry: only these 'NAME ed25519:KEY' lines may register (default: open registration)")
    p.add_argument("--allow-raw-entries", action="store_true",
                   help="with --allowlist: accept AddEntries of opaque entries that are not signed records "
                        "(refused by default, since no signer can be checked)")
    p.add_argument("--hash-cache-bytes", type=_size_arg, default=None, metavar="N",
                   help="tree hashes kept in memory (default 64 MiB; about 32 MiB per million entries keeps "
                        "every tree hash above the leaves in memory)")
    p.add_argument("--store-cache-bytes", type=_size_arg, default=None, metavar="N",
                   help="RocksDB block cache (default 32 MiB)")
    p.add_argument("--verify-processes", type=int, default=None, metavar="N",
                   help="registry: worker processes that check the signatures of large Register batches "
                        "(default: one per core; 0: check them in threads)")
    p.add_argument("--backup-dir", type=Path, default=None, metavar="DIR",
                   help="on SIGUSR1, write an online backup into DIR/backup-<time> (docs/operations.md)")
    p.add_argument("--rotate-key", action="store_true",
                   help="accept a signing key other than the one this log has used (docs/operations.md)")
    p.add_argument("--new-log", action="store_true",
                   help="start a new log with a new key in a data dir whose old store is gone (needs no store "
                        "and no signing key; sets the old log.pub and log-keys aside; docs/operations.md)")
    p.add_argument("--scrub-interval", type=float, default=None, metavar="S",
                   help="read the whole store back, checksums verified, at start and every S seconds "
                        "(default 86400; 0 = never)")
    p.add_argument("--scrub-rate", type=_size_arg, default=None, metavar="BYTES",
                   help="the scrub's read rate in bytes/s (default 8 MiB; 0 = unthrottled)")
    g = p.add_argument_group("limits and deadlines (docs/operations.md)")
    g.add_argument("--max-concurrent-streams", type=_size_arg, default=None, metavar="N", help="per connection")
    g.add_argument("--checkpoint-wait-seconds", type=float, default=None, metavar="S",
                   help="cap on an AddEntries wait_for_checkpoint (default 30)")
    g.add_argument("--max-stream-seconds", type=float, default=None, metavar="S",
                   help="a WatchCheckpoints stream ends after this; clients reopen it (default 3600)")
    g.add_argument("--rate-limit", type=float, default=None, metavar="RPS",
                   help="per-peer requests/s on the log and registry services (default 0 = off)")
    g.add_argument("--rate-burst", type=float, default=None, metavar="N", help="per-peer burst (default 2 x RPS)")
    g.add_argument("--keepalive-seconds", type=float, default=None, metavar="S",
                   help="server keepalive ping interval on busy connections (default 120)")
    g.add_argument("--min-ping-interval", type=float, default=None, metavar="S",
                   help="client pings faster than this are strikes (default 10)")
    g.add_argument("--max-ping-strikes", type=_size_arg, default=None, metavar="N",
                   help="strikes before GOAWAY too_many_pings (default 2; 0 = unlimited)")
    g.add_argument("--max-connection-idle", type=float, default=None, metavar="S",
                   help="close idle connections after S seconds (default 900; 0 = never)")
    g.add_argument("--max-connection-age", type=float, default=None, metavar="S",
                   help="GOAWAY connections older than S seconds (default 0 = never)")
    g.add_argument("--stuck-seconds", type=float, default=None, metavar="S",
                   help="health NOT_SERVING when writes wait this long without progress (default 20)")
    g = p.add_argument_group("transport security")
    g.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="serve TLS with this certificate chain")
    g.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="its private key (mode 600 or 640)")
    g.add_argument("--client-ca", type=Path, default=None, metavar="PEM",
                   help="require client certificates signed by these CAs (mutual TLS)")
    g = p.add_argument_group("observability")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--metrics-port", type=_size_arg, default=None, metavar="PORT",
                   help="serve Prometheus /metrics on 127.0.0.1:PORT")
    m.add_argument("--metrics-listen", default=None, metavar="HOST:PORT", help="serve /metrics on HOST:PORT")
    g.add_argument("--http", default=None, metavar="HOST:PORT",
                   help="serve the HTTP read path here: C2SP tlog-tiles and the explorer (docs/operations.md)")
    g.add_argument("--tiles-dir", type=Path, default=None, metavar="DIR",
                   help="write the C2SP tlog-tiles files (checkpoint, tiles, entry bundles) into DIR as the log "
                        "grows, for any web server or CDN to serve (docs/operations.md, 'Tiles')")
    g.add_argument("--witness-policy", type=Path, default=None, metavar="FILE",
                   help="push each checkpoint to the witnesses this C2SP/Sigsum policy names and serve the "
                        "newest checkpoint its quorum cosigned (docs/guarantees.md, 'Witnesses')")
    g.add_argument("--log-format", choices=("text", "json"), default=None, help="json: one object per line")
    g.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default=None)
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("backup", help="copy a stopped server's data dir (RocksDB checkpoint) and check it "
                              "(online: serve --backup-dir, then SIGUSR1)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="the data directory to copy")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="new directory for the copy")
    p.add_argument("--with-key", action="store_true", help="copy the signing key too (mode 600)")
    p.add_argument("--key", type=Path, default=None, metavar="FILE", help="signing key (default DATA/log.key)")
    p.set_defaults(func=_backup)

    p = subparsers.add_parser("fsck", help="check a stopped server's data dir offline: checksums, every entry "
                              "against the tree, the tree against the signed head (exit 0 clean, 1 damaged)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="the data directory to check")
    p.add_argument("--restore-signed-head", type=Path, default=None, metavar="NOTE",
                   help="re-create a lost SIGNED-HEAD record from the newest checkpoint note this log handed out "
                        "(docs/operations.md)")
    p.set_defaults(func=_fsck)


def _serve(args: argparse.Namespace) -> int:
    from ledger.app import serve  # the one place the client CLI reaches into the server package

    limits = {
        name: value
        for name, value in (
            ("max_entry_bytes", args.max_entry_bytes),
            ("max_batch_entries", args.max_batch_entries),
            ("max_receive_message_bytes", args.max_receive_bytes),
            ("max_manifest_bytes", args.max_manifest_bytes),
            ("drain_seconds", args.drain_seconds),
            ("allowlist", args.allowlist),
            ("allow_raw_entries", args.allow_raw_entries or None),
            ("verify_processes", args.verify_processes),
            ("hash_cache_bytes", args.hash_cache_bytes),
            ("store_cache_bytes", args.store_cache_bytes),
            ("store", args.store),
            ("max_concurrent_streams", args.max_concurrent_streams),
            ("checkpoint_wait_seconds", args.checkpoint_wait_seconds),
            ("max_stream_seconds", args.max_stream_seconds),
            ("rate_limit_per_second", args.rate_limit),
            ("rate_limit_burst", args.rate_burst),
            ("keepalive_time_seconds", args.keepalive_seconds),
            ("min_client_ping_interval_seconds", args.min_ping_interval),
            ("max_ping_strikes", args.max_ping_strikes),
            ("max_connection_idle_seconds", args.max_connection_idle),
            ("max_connection_age_seconds", args.max_connection_age),
            ("stuck_seconds", args.stuck_seconds),
            ("tls_cert", args.tls_cert),
            ("tls_key", args.tls_key),
            ("client_ca", args.client_ca),
            ("metrics_listen", f"127.0.0.1:{args.metrics_port}" if args.metrics_port is not None
             else args.metrics_listen),
            ("http_listen", args.http),
            ("tiles_dir", args.tiles_dir),
            ("witness_policy", args.witness_policy),
            ("log_format", args.log_format),
            ("log_level", args.log_level),
            ("rotate_key", args.rotate_key or None),
            ("new_log", args.new_log or None),
            ("scrub_interval_seconds", args.scrub_interval),
            ("scrub_bytes_per_second", args.scrub_rate),
            ("backup_dir", args.backup_dir),
        )
        if value is not None
    }
    config = serve.build_config(args.data, args.listen, args.origin, args.key, **limits)
    return serve.main(config)


def _fsck(args: argparse.Namespace) -> int:
    from client.exit_codes import EXIT_FAILED, EXIT_OK
    from ledger.app import fsck

    if args.restore_signed_head is not None:
        size, tree_size = fsck.restore_signed_head(args.data, args.restore_signed_head.read_bytes())
        print(f"signed-head record restored: size {size} (the store holds {tree_size})")
        return EXIT_OK
    report = fsck.fsck(args.data)
    for finding in report.findings:
        print(f"damaged: {finding}")
    print(f"{'clean' if report.clean else 'DAMAGED'}: tree size {report.tree_size}, signed head "
          f"{report.signed_size}, {report.entries_checked} entries checked against the tree")
    return EXIT_OK if report.clean else EXIT_FAILED


def _backup(args: argparse.Namespace) -> int:
    from ledger.app import backup

    report = backup.backup(args.data, args.out, key_path=args.key, include_key=args.with_key)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0
