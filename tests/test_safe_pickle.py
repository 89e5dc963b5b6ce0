"""Allow-list unpickling of OC20/OC22 LMDB records (training/data/safe_pickle.py): real torch-geometric records load,
records that reference anything else are refused without running it."""

from __future__ import annotations

import io
import os
import pickle
import re
import subprocess

import numpy as np
import pytest

from training.data import DataError, read_oc20
from training.data.safe_pickle import RefusedGlobal, safe_loads

torch = pytest.importorskip("torch")
tg = pytest.importorskip("torch_geometric.data")


def _record(k: int = 0) -> dict:
    """The fields of an OC20 S2EF record (as fairchem's LMDB writers store them)."""
    g = torch.Generator().manual_seed(k)
    n = 5
    return dict(
        pos=torch.randn(n, 3, generator=g),
        atomic_numbers=torch.tensor([29.0, 29.0, 29.0, 8.0, 1.0]),
        cell=torch.eye(3).reshape(1, 3, 3) * 9.5,
        natoms=n,
        tags=torch.tensor([0, 1, 1, 2, 2]),
        fixed=torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]),
        y=-3.25 - k,
        force=torch.randn(n, 3, generator=g, dtype=torch.float64),
        edge_index=torch.zeros(2, 0, dtype=torch.long),
        sid=torch.tensor([1000 + k]),
        fid=np.int64(k),
        extra=np.arange(3.0),
        dtype=torch.float32,
    )


def _fields(x) -> dict:
    if isinstance(x, dict):
        return x
    return dict(x.__dict__["_store"]) if "_store" in x.__dict__ else x.__dict__  # PyG 2.x / 1.x layout


def _same(a, b):
    fa, fb = _fields(a), _fields(b)
    assert set(fa) == set(fb)
    for k in fa:
        x, y = fa[k], fb[k]
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), k
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y and type(x) is type(y), k


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_torch_geometric_records_load(protocol):
    # fairchem writes OC20/OC22 LMDBs with pickle.dumps(Data, protocol=-1) (not torch.save); older files came from
    # lower protocols and PyG 1.x, so every protocol and both Data layouts must still load.
    data = tg.Data(**_record(protocol))
    _same(safe_loads(pickle.dumps(data, protocol=protocol)), data)
    plain = _record(1)
    _same(safe_loads(pickle.dumps(plain, protocol=protocol)), plain)
    legacy = tg.Data.__new__(tg.Data)  # PyG 1.x: attributes in __dict__, no _store
    legacy.__dict__.update(_record(2))
    _same(safe_loads(pickle.dumps(legacy, protocol=protocol)), legacy)


def test_lmdb_of_torch_geometric_records(tmp_path):
    pytest.importorskip("lmdb")
    records = [tg.Data(**_record(k)) for k in range(3)]
    _write_lmdb(tmp_path / "s2ef.lmdb", {str(k): pickle.dumps(r, protocol=-1) for k, r in enumerate(records)}
                | {"length": pickle.dumps(3)})
    s = read_oc20(tmp_path / "s2ef.lmdb")
    assert len(s) == 3
    for k, r in enumerate(records):
        np.testing.assert_allclose(s[k].positions, r.pos.numpy(), rtol=1e-7)
        np.testing.assert_array_equal(s[k].forces, r.force.numpy())
        assert s[k].energy == pytest.approx(r.y) and s[k].numbers.tolist() == [29, 29, 29, 8, 1]


def _write_lmdb(path, values: dict[str, bytes]):
    import lmdb

    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in values.items():
            txn.put(k.encode("ascii"), v)
    env.close()


class _Evil:
    """A record whose unpickling calls ``call(*args)``."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _malicious(sentinel) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the global the refusal must name); each would create ``sentinel`` if it ran."""
    cmd = f"touch {sentinel}"
    payload = io.BytesIO()
    torch.save(_Evil(os.system, cmd), payload)
    return {
        "os.system": (pickle.dumps(tg.Data(pos=torch.zeros(1, 3), evil=_Evil(os.system, cmd))), os.system.__module__
                      + ".system"),
        "hand-written os.system": (f"cos\nsystem\n(S'{cmd}'\ntR.".encode(), "os.system"),
        "builtins.eval": (pickle.dumps([1, _Evil(eval, f"__import__('os').system('{cmd}')")]), "builtins.eval"),
        "builtins.exec": (pickle.dumps({"pos": _Evil(exec, f"open('{sentinel}', 'w')")}), "builtins.exec"),
        "subprocess": (pickle.dumps(_Evil(subprocess.call, ["touch", str(sentinel)])), "subprocess.call"),
        "getattr": (pickle.dumps(_Evil(getattr, [], "append")), "builtins.getattr"),  # the first step of most chains
        # a tensor whose storage bytes are a torch.save payload: torch.storage._load_from_bytes would torch.load them
        # with weights_only=False
        "storage payload": (_storage_attack(payload.getvalue()), os.system.__module__ + ".system"),
    }


def _storage_attack(torch_saved: bytes) -> bytes:
    class _Storage:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (torch_saved,)

    return pickle.dumps(_Storage())


def test_malicious_records_are_refused_unexecuted(tmp_path):
    sentinel = tmp_path / "pwned"
    for label, (raw, name) in _malicious(sentinel).items():
        with pytest.raises(RefusedGlobal) as e:
            safe_loads(raw)
        assert e.value.name == name, (label, e.value.name)
        assert not sentinel.exists(), label
    # the same bytes through plain pickle do run: the test's attacks are real
    pickle.loads(_malicious(sentinel)["os.system"][0])
    assert sentinel.exists()


def test_malicious_lmdb_record_is_a_data_error(tmp_path):
    pytest.importorskip("lmdb")
    sentinel = tmp_path / "pwned"
    attacks = _malicious(sentinel)
    good = pickle.dumps(tg.Data(**_record(0)), protocol=-1)
    _write_lmdb(tmp_path / "evil.lmdb", {"0": good, "1": attacks["os.system"][0], "2": attacks["builtins.eval"][0],
                                         "3": attacks["storage payload"][0]})
    s = read_oc20(tmp_path / "evil.lmdb")
    assert s[0].energy == pytest.approx(-3.25)
    for key, label in ((1, "os.system"), (2, "builtins.eval"), (3, "storage payload")):
        name = attacks[label][1]
        with pytest.raises(DataError, match=rf"evil\.lmdb:{key}: record refers to '{re.escape(name)}'.*refused") as e:
            s[key]
        assert isinstance(e.value, ValueError)
    assert not sentinel.exists()
