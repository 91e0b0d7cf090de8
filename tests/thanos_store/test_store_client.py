"""Unit tests of store_client.py's codecs and argument parsing (no server needed).

The vectors in fixtures/xor_chunks.json come from Prometheus 2.42 (promtool-written blocks),
Ringest's Rust encoder and the xxhash-rust crate; tests/e2e/thanos_store.rs rebuilds and checks
them. Run: python -m unittest discover -s tests/thanos_store -p 'test_*.py'
(testkit's thanos_store tests do, from `cargo test`).
"""

import contextlib
import io
import json
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import store_client as sc  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "xor_chunks.json")


def load_fixtures():
    with open(FIXTURES) as f:
        return json.load(f)


class Xxh64Test(unittest.TestCase):
    def test_reference_empty(self):
        # The published XXH64 of the empty input with seed 0.
        self.assertEqual(sc.xxh64(b""), 0xEF46DB3751D8E999)

    def test_vectors_from_xxhash_rust(self):
        vectors = load_fixtures()["xxh64"]
        self.assertGreater(len(vectors), 40)
        for v in vectors:
            data = bytes.fromhex(v["data_hex"])
            with self.subTest(len=len(data), seed=v["seed"]):
                self.assertEqual(sc.xxh64(data, v["seed"]), v["hash"])

    def test_chunk_hashes(self):
        for c in load_fixtures()["chunks"]:
            self.assertEqual(sc.xxh64(bytes.fromhex(c["data_hex"])), c["xxh64"], c["name"])


class XorDecodeTest(unittest.TestCase):
    def test_fixture_chunks(self):
        chunks = load_fixtures()["chunks"]
        sources = {c["source"] for c in chunks}
        self.assertEqual(sources, {"prometheus-2.42", "ringest-chunkenc"})
        for c in chunks:
            with self.subTest(name=c["name"], source=c["source"], min_time=c["min_time"]):
                got = sc.decode_xor(bytes.fromhex(c["data_hex"]))
                self.assertEqual([list(s) for s in got], c["samples"])

    def test_special_values_keep_their_bits(self):
        # Stale marker, Go NaN, -0.0 and +Inf are all in the Ringest edge chunk.
        edge = next(c for c in load_fixtures()["chunks"] if c["name"] == "ringest_edge")
        bits = {v for _, v in sc.decode_xor(bytes.fromhex(edge["data_hex"]))}
        for want in (0x7FF0000000000002, 0x7FF8000000000001, 0x8000000000000000,
                     0x7FF0000000000000, (1 << 64) - 1):
            self.assertIn(want, bits)

    def test_truncated_chunks_fail(self):
        for c in load_fixtures()["chunks"]:
            data = bytes.fromhex(c["data_hex"])
            if not c["samples"]:
                continue
            with self.subTest(name=c["name"], min_time=c["min_time"]):
                _, used = sc.decode_xor_end(data)
                need = 2 + (used + 7) // 8
                # Go's bstream may leave at most one empty byte after the samples' bits.
                self.assertIn(len(data) - need, (0, 1))
                self.assertEqual([list(s) for s in sc.decode_xor(data[:need])], c["samples"])
                with self.assertRaises(sc.ChunkDecodeError):
                    sc.decode_xor(data[:need - 1])

    def test_header_only(self):
        self.assertEqual(sc.decode_xor(b"\x00\x00"), [])
        with self.assertRaises(sc.ChunkDecodeError):
            sc.decode_xor(b"\x00")
        # Claims one sample but holds no bytes.
        with self.assertRaises(sc.ChunkDecodeError):
            sc.decode_xor(b"\x00\x01")

    def test_hand_built_chunk(self):
        # Two samples built by hand: t0 = 1000 (zigzag varint 2000 = d0 0f), v0 = 1.0, then
        # tdelta 15 (uvarint 0f), value unchanged (bit 0, padded with zeros).
        data = struct.pack(">H", 2) + b"\xd0\x0f" + struct.pack(">d", 1.0) + b"\x0f\x00"
        self.assertEqual(sc.decode_xor(data),
                         [(1000, 0x3FF0000000000000), (1015, 0x3FF0000000000000)])


class MatcherTest(unittest.TestCase):
    def test_operators(self):
        self.assertEqual(sc.parse_matcher("job=api"), ("EQ", "job", "api"))
        self.assertEqual(sc.parse_matcher("job!=api"), ("NEQ", "job", "api"))
        self.assertEqual(sc.parse_matcher("job=~a.*"), ("RE", "job", "a.*"))
        self.assertEqual(sc.parse_matcher("job!~a|b"), ("NRE", "job", "a|b"))
        self.assertEqual(sc.parse_matcher('job="x=y"'), ("EQ", "job", "x=y"))
        self.assertEqual(sc.parse_matcher("job="), ("EQ", "job", ""))
        self.assertEqual(sc.parse_matcher("a=b=c"), ("EQ", "a", "b=c"))

    def test_malformed(self):
        for bad in ("job", "=x", ""):
            with self.assertRaises(ValueError):
                sc.parse_matcher(bad)


class CliTest(unittest.TestCase):
    def test_decode_subcommand(self):
        c = next(c for c in load_fixtures()["chunks"] if c["name"] == "ringest_two")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            self.assertEqual(sc.main(["decode", c["data_hex"]]), 0)
        out = json.loads(buf.getvalue())
        self.assertEqual(out["samples"], c["samples"])
        self.assertEqual(out["xxh64"], c["xxh64"])


if __name__ == "__main__":
    unittest.main()
