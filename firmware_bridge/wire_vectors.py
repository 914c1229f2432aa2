"""The wire protocol's test vectors, one data file shared by the Python tests, the doc and C.

``vectors/wire_vectors.json`` (package data) holds every byte-level vector of
``docs/wire-protocol.md``: COBS pairs, valid frames with their messages, and invalid frames
with the error a receiver must count.  The doc's vector section is rendered from the file
(:func:`render_doc_section`; ``python -m karakuri.firmware_bridge.wire_vectors`` prints it),
and a test checks the doc holds it verbatim, so the file, the tests and the doc cannot
disagree.  Imports numpy and the standard library only.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np

from karakuri.firmware_bridge.messages import MESSAGES, Message, MsgType
from karakuri.robot.link import CommandMode

VECTORS_FILE = "vectors/wire_vectors.json"

# Fields of the JSON "fields" object that the wire carries but the Python message derives.
_DERIVED = {"n_joints", "flags"}


def load_vectors() -> dict[str, Any]:
    """The parsed ``wire_vectors.json``: keys ``cobs``, ``frames``, ``invalid_frames``, ..."""
    text = resources.files("karakuri.firmware_bridge").joinpath(VECTORS_FILE).read_text("utf-8")
    return json.loads(text)


def message_from_json(message: dict[str, Any]) -> tuple[Message, int, int]:
    """A vector's ``message`` object as ``(message, seq, time_us)``.

    Raises:
        ValueError: A derived field (``n_joints``, ``flags``) disagrees with the arrays.
    """
    cls = MESSAGES[MsgType[message["type"]]]
    fields = dict(message["fields"])
    derived = {k: fields.pop(k) for k in _DERIVED & fields.keys()}
    if cls.TYPE is MsgType.COMMAND:
        fields["mode"] = CommandMode(fields["mode"])
    msg = cls(**fields)
    got = {"n_joints": _n_joints(msg), "flags": int(getattr(msg, "flags", 0))}
    for key, value in derived.items():
        if got[key] != value:
            raise ValueError(f"vector field {key}={value} but the arrays give {got[key]}")
    return msg, int(message["seq"]), int(message["time_us"])


def _n_joints(msg: Message) -> int:
    for name in ("lower", "q", "q_target"):
        arr = getattr(msg, name, None)
        if isinstance(arr, np.ndarray):
            return int(arr.size)
    return 0


def _hex_lines(data: bytes, indent: str = "    ") -> str:
    rows = [data[i:i + 16] for i in range(0, len(data), 16)]
    return "\n".join(indent + " ".join(f"{b:02x}" for b in row) for row in rows)


def _short_hex(data: bytes) -> str:
    if not data:
        return "(empty)"
    if len(data) <= 8:
        return "`" + " ".join(f"{b:02x}" for b in data) + "`"
    head = " ".join(f"{b:02x}" for b in data[:3])
    tail = " ".join(f"{b:02x}" for b in data[-3:])
    return f"`{head} … {tail}` ({len(data)} bytes)"


def render_cobs_table(vectors: dict[str, Any]) -> str:
    """The doc's COBS table (payload → stuffed bytes; long ones abbreviated)."""
    rows = ["| payload | stuffed |", "|---|---|"]
    for v in vectors["cobs"]:
        raw, stuffed = bytes.fromhex(v["raw_hex"]), bytes.fromhex(v["stuffed_hex"])
        rows.append(f"| {_short_hex(raw)} | {_short_hex(stuffed)} |")
    return "\n".join(rows) + "\n"


def render_frame(v: dict[str, Any]) -> str:
    """One valid-frame vector as it appears in the doc: description, then a text block."""
    payload, frame = bytes.fromhex(v["payload_hex"]), bytes.fromhex(v["frame_hex"])
    return (f"{v['description']}\n\n```text\nvector: {v['name']}\ncrc32: {v['crc32']}\n"
            f"payload ({len(payload)} bytes):\n{_hex_lines(payload)}\n"
            f"frame ({len(frame)} bytes):\n{_hex_lines(frame)}\n```\n")


def render_invalid(v: dict[str, Any]) -> str:
    """One invalid-frame vector as it appears in the doc."""
    frame = bytes.fromhex(v["frame_hex"])
    return (f"{v['description']}\n\n```text\nvector: {v['name']}\nerror: {v['error']}\n"
            f"frame ({len(frame)} bytes):\n{_hex_lines(frame)}\n```\n")


def render_doc_section(vectors: dict[str, Any] | None = None) -> list[str]:
    """Every piece of text the doc must hold verbatim: the COBS table, then each vector."""
    vectors = vectors if vectors is not None else load_vectors()
    return ([render_cobs_table(vectors)] + [render_frame(v) for v in vectors["frames"]]
            + [render_invalid(v) for v in vectors["invalid_frames"]])


if __name__ == "__main__":
    print("\n".join(render_doc_section()))
