"""The opt-in pickle codec, for values that have no JSON form."""

from __future__ import annotations

import base64
import pickle
from typing import Any

from durably.codec.decode import json_load
from durably.codec.describe import type_name
from durably.codec.encode import b64, check_size
from durably.errors import ValueDecodingError, ValueEncodingError

_PICKLE_KEY = "$pickle"


class PickleCodec:
    """Opt-in codec for values without a JSON form: stores ``{"$pickle": "<base64>"}``.

    .. warning::
       Loading a pickle runs code chosen by whoever wrote it.  Use this codec only when
       everyone who can write to the durably tables is trusted as much as your own code.
       Stored values are also opaque to SQL and tied to your classes' import paths.
    """

    name: str = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, value: object) -> str:
        """Return ``{"$pickle": "<base64 pickle>"}`` as JSON text."""
        try:
            raw = pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise ValueEncodingError(
                f"cannot pickle value of type {type_name(value)!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return check_size('{"' + _PICKLE_KEY + '":"' + b64(raw) + '"}')

    def load(self, data: object, hint: object = None) -> Any:
        """Unpickle a stored value (this runs code: see the class warning).

        Data that is not a stored pickle is loaded as JSON with ``hint``.
        """
        if type(data) is dict and len(data) == 1 and type(data.get(_PICKLE_KEY)) is str:
            try:
                raw = base64.b64decode(data[_PICKLE_KEY], validate=True)
                return pickle.loads(raw)  # noqa: S301 - opt-in codec, documented above
            except Exception as exc:
                raise ValueDecodingError(
                    f"cannot unpickle stored value: {type(exc).__name__}: {exc}"
                ) from exc
        return json_load(data, hint)

    def __repr__(self) -> str:
        return f"PickleCodec(protocol={self.protocol})"
