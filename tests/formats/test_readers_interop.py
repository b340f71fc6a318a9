"""Files written by the real libraries (torch, onnx, gguf).

onnx and gguf are test extras; torch is an outside reference (tests/references.py):
skipped locally without it, a failure under CI, where ``.ci/run`` installs the CPU build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.errors import FormatError
from client.formats import open_model
from tests.references import require_torch


def _read(path: Path) -> dict[str, np.ndarray]:
    return dict(open_model(path).tensors())


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_torch_save_round_trip(tmp_path: Path, zipfile_format: bool) -> None:
    torch: Any = require_torch()
    g = torch.Generator().manual_seed(0)
    sd = {
        "w": torch.randn(8, 16, generator=g),
        "b": torch.zeros(8),
        "h": torch.randn(4, 4, generator=g).half(),
        "bf": torch.randn(4, 4, generator=g).bfloat16(),
        "i": torch.arange(5),
        "t": torch.randn(6, 3, generator=g).t(),  # a non-contiguous view
        "p": torch.nn.Parameter(torch.randn(3, 3, generator=g)),
    }
    path = tmp_path / "m.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=zipfile_format)
    got = _read(path)
    assert sorted(got) == sorted(sd)
    for k, v in sd.items():
        want = v.detach().float().numpy() if k == "bf" else v.detach().numpy()
        np.testing.assert_array_equal(got[k], want, err_msg=k)


def test_torch_module_pickle_is_refused(tmp_path: Path) -> None:
    torch: Any = require_torch()
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(4, 4), path)
    with pytest.raises(FormatError, match="refusing pickle global torch.nn.modules.linear.Linear"):
        _read(path)


def test_onnx_library_model(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(0)
    w = r.standard_normal((16, 8)).astype(np.float32)  # (in, out) as MatMul holds it
    q = r.integers(-127, 128, (6, 5)).astype(np.int8)
    scale = (r.random(6) + 0.1).astype(np.float32)
    typed = r.standard_normal(7).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "fc.weight"),
        numpy_helper.from_array(q, "qw"),
        numpy_helper.from_array(scale, "qw_scale"),
        helper.make_tensor("typed", TensorProto.FLOAT, [7], typed.tolist()),  # float_data, not raw
        numpy_helper.from_array(np.arange(4, dtype=np.int64), "ids"),
        numpy_helper.from_array(r.standard_normal((3, 3)).astype(np.float16), "half"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "fc.weight"], ["y"]),
        helper.make_node("DequantizeLinear", ["qw", "qw_scale"], ["qw_f"], axis=0),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], initializer=inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    got = _read(path)
    assert sorted(got) == sorted(["fc.weight", "qw", "typed", "ids", "half"])
    np.testing.assert_array_equal(got["fc.weight"], w.T)
    np.testing.assert_allclose(got["qw"], q.astype(np.float32) * scale[:, None], rtol=1e-6)
    np.testing.assert_array_equal(got["typed"], typed)
    np.testing.assert_array_equal(got["ids"], np.arange(4))
    assert got["half"].dtype == np.float16


def test_gguf_writer_file(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    r = np.random.default_rng(0)
    w = r.standard_normal((8, 64)).astype(np.float32)
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("test.count", 3)
    writer.add_array("test.list", [1, 2, 3])
    writer.add_tensor("w.f32", w)
    writer.add_tensor("w.f16", w.astype(np.float16))
    writer.add_tensor("w.q8", gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    got = _read(path)
    np.testing.assert_array_equal(got["w.f32"], w)
    np.testing.assert_array_equal(got["w.f16"], w.astype(np.float16))
    assert got["w.q8"].shape == (8, 64) and np.abs(got["w.q8"] - w).max() < 0.03
