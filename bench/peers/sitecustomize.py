# Counts libvirt-python API calls made by the process; writes JSON to $LVCOUNT_OUT at exit.
import os

_out = os.environ.get("LVCOUNT_OUT")
if _out:
    import atexit
    import collections
    import functools
    import json

    import libvirt

    _counts = collections.Counter()

    def _wrap(qual, fn):
        @functools.wraps(fn)
        def w(*a, **k):
            _counts[qual] += 1
            return fn(*a, **k)

        return w

    for _cls in (
        "virConnect",
        "virDomain",
        "virNetwork",
        "virStoragePool",
        "virStorageVol",
        "virDomainSnapshot",
        "virInterface",
        "virNodeDevice",
        "virSecret",
        "virNWFilter",
    ):
        c = getattr(libvirt, _cls, None)
        if c is None:
            continue
        for n, v in list(vars(c).items()):
            if n.startswith("_") or not callable(v):
                continue
            setattr(c, n, _wrap(f"{_cls}.{n}", v))
    for n in ("open", "openReadOnly", "openAuth"):
        setattr(libvirt, n, _wrap(f"libvirt.{n}", getattr(libvirt, n)))

    @atexit.register
    def _dump():
        with open(_out, "w") as f:  # noqa: PTH123
            json.dump({"total": sum(_counts.values()), "calls": dict(_counts.most_common())}, f, indent=1)
