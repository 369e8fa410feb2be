"""cloudpickle, or cloudpickle that sends the caller's ``__main__`` classes and functions by name.

cloudpickle sends what a script defines by value, and a class sent from the caller comes
back as the caller's own (it tracks the classes it sent). A worker that inherited the
run's function by fork (:mod:`.function_parcel`) never received those classes: it holds
the caller's ``__main__`` as it was when it forked, in this very call. Between the two,
``__main__``'s classes and functions travel by name, so that a ``Point`` made there is
the caller's ``Point`` here and ``except MyError`` catches what a worker raised.

Kept free of the rest of the package: worker processes import it.

>>> import pickle
>>> pickle.loads(dumps([1, "a"], by_name=True))
[1, 'a']
"""

from __future__ import annotations

import io
import pickle
import sys
import types

import cloudpickle

__all__ = ["dumps", "found_by_name"]


def dumps(obj, *, by_name: bool = False) -> bytes:
    """``obj`` as cloudpickle bytes; ``by_name``: ``__main__``'s classes and functions by
    their name (both sides hold the same ``__main__``: a fork of one process in one call)."""
    if not by_name:
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    buffer = io.BytesIO()
    _MainByName(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class _MainByName(cloudpickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType)) and _named_in_main(obj):
            return NotImplemented  # pickle's own: by module and name
        return super().reducer_override(obj)


def _named_in_main(obj) -> bool:
    """Is ``obj`` what ``__main__`` holds under its qualified name here?"""
    return getattr(obj, "__module__", None) == "__main__" and found_by_name(obj)


def found_by_name(obj) -> bool:
    """Is ``obj`` what its module holds under its qualified name (so that pickle can send
    it by name)?

    >>> found_by_name(dumps), found_by_name(lambda x: x)
    (True, False)
    """
    found = sys.modules.get(getattr(obj, "__module__", None) or "")
    for part in getattr(obj, "__qualname__", "<>").split("."):
        found = getattr(found, part, None)
    return found is obj
