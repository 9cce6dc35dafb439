"""In-process Beam (the local runner's FnApiRunner, `in_memory`): two fixed costs of every Beam stage cut.

On small inputs (a week of ml-100k: a few thousand ratings) each Beam component (ExampleGen,
StatisticsGen, Transform, Evaluator) is mostly Beam's own per-stage work, not the data's. Profiled on
replay spans (docs/continuous-training.md#the-fixed-cost-of-a-span), two pieces of it were pure
bookkeeping that changes no result; both off, a warm replay span's fixed cost was about 1 s lower
(12.8 s → 11.8 s, alone on the machine; within run-to-run noise of about ±0.5 s a component):

* **The SDK worker's state cache.** The in-memory worker caches every side input it reads and
  weighs each one first (`statecache.get_deep_size`: objsize walking the decoded objects), and the
  in-memory worker's cache size is a module constant
  (`worker_handlers.STATE_CACHE_SIZE_MB`, not a pipeline option). Set to 0 it is off: a side input
  is then read from the runner's in-memory state once per bundle (Beam's `SideInputMap` keeps it for
  the bundle), the path Beam takes for any worker started without a cache (its worker pool's
  default). The values are the same; only the caching between bundles goes.
* **DoFn signature inspection.** Every stage's bundle processor inspects each DoFn method's
  signature again (`inspect.signature`, through `apache_beam.transforms.core.get_signature`, to find
  state, timers and side-input arguments) on every pipeline: remembered per function here (a
  function's signature does not change).

`tune()` applies both, once per process, and only to what runs in this process: a
`multi_processing` or remote runner's workers are other processes and keep Beam's defaults.
`untune()` restores Beam's (tests).
"""

from __future__ import annotations

import weakref
from typing import Callable, Dict, Optional

_ORIGINAL: Dict[str, object] = {}


def _memoized(get_signature: Callable) -> Callable:
    """get_signature, remembered per function (bound methods: per underlying function and bound object)."""
    functions: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    methods: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def cached(func):
        underlying = getattr(func, "__func__", None)
        owner = getattr(func, "__self__", None)
        try:
            if underlying is not None and owner is not None:
                # A bound method: a new object at every attribute access; its signature is its
                # function's, less the first argument, whatever the instance.
                table, key = methods, underlying
            else:
                table, key = functions, func
            found: Optional[object] = table.get(key)
            if found is None:
                found = get_signature(func)
                table[key] = found
            return found
        except TypeError:  # not weakly referenceable or not hashable: not remembered
            return get_signature(func)

    cached.__wrapped__ = get_signature
    return cached


def tune() -> None:
    """Turns the in-process SDK worker's state cache off and remembers DoFn signatures (module docstring)."""
    if _ORIGINAL:
        return
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    from apache_beam.transforms import core

    if hasattr(worker_handlers, "STATE_CACHE_SIZE_MB"):
        _ORIGINAL["STATE_CACHE_SIZE_MB"] = worker_handlers.STATE_CACHE_SIZE_MB
        worker_handlers.STATE_CACHE_SIZE_MB = 0
    if hasattr(core, "get_signature"):
        _ORIGINAL["get_signature"] = core.get_signature
        core.get_signature = _memoized(core.get_signature)


def untune() -> None:
    """Restores what `tune` changed."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    from apache_beam.transforms import core

    if "STATE_CACHE_SIZE_MB" in _ORIGINAL:
        worker_handlers.STATE_CACHE_SIZE_MB = _ORIGINAL["STATE_CACHE_SIZE_MB"]
    if "get_signature" in _ORIGINAL:
        core.get_signature = _ORIGINAL["get_signature"]
    _ORIGINAL.clear()


def tuned() -> bool:
    return bool(_ORIGINAL)
