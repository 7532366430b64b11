"""Frames: what goes in comes out, and nothing a sandbox can send does more than raise ProtocolError."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from grader.sandbox.protocol import (MAGIC, PREFIX, ProtocolError, decode_frame, encode_frame, read_frame,
                             write_frame)

LIMIT = 1 << 20

# ---- strategies ----

keys = st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True)
numeric_dtypes = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                           hnp.floating_dtypes(), hnp.complex_number_dtypes())
arrays = numeric_dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
headers = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def frame_bytes(header: bytes, payload: bytes, magic: bytes = MAGIC) -> bytes:
    return PREFIX.pack(magic, len(header), len(payload)) + header + payload


def npz(**members: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def rejected(data: bytes, limit: int = LIMIT) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_frame(data, limit)
    return str(info.value)


# ---- round trips ----


@given(headers, st.dictionaries(keys, arrays, max_size=4))
@settings(max_examples=60, deadline=None)
def test_round_trip(header, arrays_in):
    got_header, got_arrays = decode_frame(encode_frame(header, arrays_in), LIMIT)
    assert got_header == header
    assert got_arrays.keys() == arrays_in.keys()
    for key, arr in arrays_in.items():
        assert got_arrays[key].dtype == arr.dtype and got_arrays[key].shape == arr.shape
        np.testing.assert_array_equal(got_arrays[key], arr)


def test_several_frames_on_one_stream_then_clean_eof():
    """The worker's loop: frames back to back, None once the host closes the stream."""
    stream = io.BytesIO()
    write_frame(stream, {"n": 1}, {"a": np.arange(3.0)})
    write_frame(stream, {"n": 2})
    stream.seek(0)
    assert read_frame(stream, LIMIT)[0] == {"n": 1}
    assert read_frame(stream, LIMIT) == ({"n": 2}, {})
    assert read_frame(stream, LIMIT) is None


def test_keys_that_np_savez_reserves_still_work():
    arrays_in = {"file": np.zeros(2), "allow_pickle": np.ones(1, dtype=bool)}
    assert decode_frame(encode_frame({}, arrays_in), LIMIT)[1].keys() == arrays_in.keys()


def test_non_contiguous_and_fortran_arrays_survive():
    a = np.arange(24.0).reshape(4, 6)
    arrays_in = {"t": a.T, "s": a[::2, 1::3], "f": np.asfortranarray(a)}
    for key, arr in decode_frame(encode_frame({}, arrays_in), LIMIT)[1].items():
        np.testing.assert_array_equal(arr, arrays_in[key])


@pytest.mark.parametrize("bad", [np.array([1, "x"], dtype=object), np.array(["ab"]), np.zeros(2, dtype="M8[s]")])
def test_writer_refuses_non_numeric_arrays(bad):
    with pytest.raises(ProtocolError):
        encode_frame({}, {"a": bad})


def test_writer_refuses_non_json_header():
    with pytest.raises(ProtocolError):
        encode_frame({"x": object()})
    with pytest.raises(ProtocolError):
        encode_frame(["not", "an", "object"])  # type: ignore[arg-type]


# ---- garbage never raises anything but ProtocolError ----


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_random_bytes_raise_only_protocol_error(data):
    try:
        read_frame(io.BytesIO(data), LIMIT)
    except ProtocolError:
        pass


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_payload_behind_a_valid_prefix_raises_only_protocol_error(payload):
    for data in (frame_bytes(b"{}", payload), frame_bytes(payload, b""), frame_bytes(b"{}", b"PK\x03\x04" + payload)):
        try:
            decode_frame(data, LIMIT)
        except ProtocolError:
            pass


@given(headers, st.dictionaries(keys, arrays, min_size=1, max_size=3), st.data())
@settings(max_examples=40, deadline=None)
def test_truncated_frames_are_rejected(header, arrays_in, data):
    whole = encode_frame(header, arrays_in)
    cut = data.draw(st.integers(1, len(whole) - 1))
    with pytest.raises(ProtocolError):
        read_frame(io.BytesIO(whole[:cut]), LIMIT)


@given(headers, st.dictionaries(keys, arrays, min_size=1, max_size=3), st.data())
@settings(max_examples=60, deadline=None)
def test_corrupted_frames_raise_only_protocol_error(header, arrays_in, data):
    whole = bytearray(encode_frame(header, arrays_in))
    for _ in range(data.draw(st.integers(1, 4))):
        whole[data.draw(st.integers(0, len(whole) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_frame(bytes(whole), LIMIT)
    except ProtocolError:
        pass


# ---- specific rejections ----


def test_bad_magic():
    assert "magic" in rejected(frame_bytes(b"{}", b"", magic=b"EVIL"))


def test_oversized_lengths_are_refused_before_reading():
    class NoMoreReads(io.BytesIO):
        """Fails the test if anything past the prefix is read (i.e. allocated for)."""

        def read(self, n=-1):
            assert self.tell() < PREFIX.size, "read past the prefix of an oversized frame"
            return super().read(n)

    huge = PREFIX.pack(MAGIC, 10, 2**62)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        read_frame(NoMoreReads(huge), LIMIT)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        read_frame(NoMoreReads(PREFIX.pack(MAGIC, 2**32 - 1, 0)), LIMIT)


@pytest.mark.parametrize("header", [b"[1, 2]", b'"text"', b"42", b"null", b"{", b"\xff\xfe", b"", b"[" * 100_000])
def test_header_must_be_a_json_object(header):
    rejected(frame_bytes(header, b""))


def test_trailing_bytes_rejected_by_decode_frame():
    assert "trailing" in rejected(encode_frame({}) + b"x")


def test_pickled_object_array_in_npz_is_rejected():
    payload = npz(evil=np.array([{"a": 1}, len], dtype=object))  # np.save pickles object arrays
    assert "pickle" in rejected(frame_bytes(b"{}", payload))


def test_raw_pickle_payload_is_rejected():
    assert "not an .npz" in rejected(frame_bytes(b"{}", pickle.dumps({"a": np.arange(3)})))


def test_single_npy_payload_is_rejected():
    buf = io.BytesIO()
    np.save(buf, np.arange(3))
    assert "not an .npz" in rejected(frame_bytes(b"{}", buf.getvalue()))


@pytest.mark.parametrize("arr", [np.array(["text"]), np.zeros(2, dtype=[("a", "f8")]), np.zeros(1, dtype="m8[s]")])
def test_non_numeric_npz_members_are_rejected(arr):
    assert "dtype" in rejected(frame_bytes(b"{}", npz(a=arr)))


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_member_declaring_more_than_the_cap_is_rejected_from_the_directory():
    payload = bytearray(_zip({"a.npy": _npy(np.zeros(4))}))
    # Patch the central directory's uncompressed size (offset 24 of the entry) to 1 GiB.
    entry = payload.rindex(b"PK\x01\x02")
    payload[entry + 24:entry + 28] = struct.pack("<I", 2**30)
    assert "declares" in rejected(frame_bytes(b"{}", bytes(payload)))


def test_shape_larger_than_the_data_is_rejected_before_allocation():
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    member = buf.getvalue() + np.zeros(2).tobytes()   # claims 8 TB, carries 16 bytes
    assert "larger than its data" in rejected(frame_bytes(b"{}", _zip({"a.npy": member})))


@pytest.mark.parametrize("members, message", [
    ({"a.txt": b"hello"}, "unexpected member"),
    ({"../a.npy": _npy(np.zeros(1))}, "unexpected member"),
    ({"dir/a.npy": _npy(np.zeros(1))}, "unexpected member"),
])
def test_unexpected_members_are_rejected(members, message):
    assert message in rejected(frame_bytes(b"{}", _zip(members)))


def test_compressed_members_are_rejected():
    payload = _zip({"a.npy": _npy(np.zeros(1000))}, zipfile.ZIP_DEFLATED)
    assert "compressed" in rejected(frame_bytes(b"{}", payload))


def test_eof_inside_the_prefix_is_truncation_not_a_clean_end():
    with pytest.raises(ProtocolError, match="truncated"):
        read_frame(io.BytesIO(encode_frame({})[:5]), LIMIT)


def test_stream_errors_pass_through_unchanged():
    """A deadline raised by the stream is the caller's business, not a malformed frame."""

    class Deadline:
        def read(self, n):
            raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):
        read_frame(Deadline(), LIMIT)  # type: ignore[arg-type]
