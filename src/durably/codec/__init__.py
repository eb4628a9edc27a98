"""How durably stores values: JSON text for PostgreSQL ``jsonb`` columns, rebuilt from hints.

Workflow inputs, step results, workflow results and errors are written as ``jsonb`` so that
they stay readable with plain SQL.  On replay they must come back with the Python type the
code expects, so :class:`JsonCodec` rebuilds them from type hints (dataclasses, pydantic
models, datetimes, UUIDs, enums, containers, unions...).

:class:`PickleCodec` is an opt-in escape hatch for values that have no JSON form.

Modules: ``protocol`` (the :class:`Codec` interface), ``jsoncodec`` and ``pickling`` (the two
codecs), ``encode`` (value to JSON text), ``decode`` (JSON data to the hinted type), ``args``
(function arguments and results), ``errors`` (exceptions) and ``describe`` (how error
messages name values, types and paths).
"""

from __future__ import annotations

from durably.codec.args import dumps_args, load_args, return_hint
from durably.codec.encode import MAX_DEPTH as MAX_DEPTH
from durably.codec.encode import MAX_VALUE_BYTES as MAX_VALUE_BYTES
from durably.codec.errors import dump_error, load_error
from durably.codec.jsoncodec import JsonCodec
from durably.codec.pickling import PickleCodec
from durably.codec.protocol import Codec

__all__ = [
    "Codec",
    "JsonCodec",
    "PickleCodec",
    "dump_error",
    "dumps_args",
    "load_args",
    "load_error",
    "return_hint",
]
