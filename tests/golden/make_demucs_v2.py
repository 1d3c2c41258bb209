"""Write tests/golden/demucs_v2.npz: Demucs v2's own model code run on a fixed input with fixed weights.

Reference: facebookresearch/demucs at 7445cbdb38e40df947cba1e0a08b7ee85d08ec9c (the last v2 commit; its
``demucs/model.py`` is that of the "demucs v2" commit d6abb13 plus an optional ``normalize``). Usage::

    git clone https://github.com/facebookresearch/demucs && git -C demucs checkout 7445cbd
    python tests/golden/make_demucs_v2.py demucs/demucs

The checkout's ``utils.py`` imports diffq and more, so only ``center_trim`` is taken from it (its source,
unchanged); ``capture_init`` (which only records constructor arguments) is replaced by a no-op. The input
is padded to the model's valid length as v2's ``apply_model`` does and the output centre-trimmed back.
tests/test_model_parity.py::test_demucs_matches_v2_golden loads the weights into ours and compares.
"""

from __future__ import annotations

import argparse
import ast
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CONFIG = {"audio_channels": 2, "channels": 8, "depth": 2, "context": 3, "lstm_layers": 2, "normalize": False}
LENGTH = 1000


def load_reference(folder: Path) -> types.ModuleType:
    """Import ``folder``/model.py as package ``_demucs_v2`` with a minimal ``utils`` beside it."""
    utils_source = (folder / "utils.py").read_text()
    tree = ast.parse(utils_source)
    center_trim = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "center_trim")
    utils = types.ModuleType("_demucs_v2.utils")
    exec(ast.get_source_segment(utils_source, center_trim), utils.__dict__)
    utils.capture_init = lambda init: init
    package = types.ModuleType("_demucs_v2")
    package.__path__ = []
    sys.modules.update({"_demucs_v2": package, "_demucs_v2.utils": utils})
    model = types.ModuleType("_demucs_v2.model")
    model.__package__ = "_demucs_v2"
    exec(compile((folder / "model.py").read_text(), str(folder / "model.py"), "exec"), model.__dict__)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="the demucs/ package folder of a v2 checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("demucs_v2.npz"))
    args = parser.parse_args()
    reference = load_reference(args.reference)
    torch.manual_seed(0)
    model = reference.Demucs(sources=["target"], **CONFIG).eval()
    x = torch.randn(2, CONFIG["audio_channels"], LENGTH, generator=torch.Generator().manual_seed(1)) * 0.3
    delta = model.valid_length(LENGTH) - LENGTH
    with torch.no_grad():
        y = model(F.pad(x, (delta // 2, delta - delta // 2)))[:, 0]
    y = sys.modules["_demucs_v2.utils"].center_trim(y, LENGTH)
    arrays = {f"state/{key}": value.numpy() for key, value in model.state_dict().items()}
    np.savez_compressed(args.out, input=x.numpy(), output=y.numpy(), valid_length=model.valid_length(LENGTH),
                        **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {sum(a.size for a in arrays.values())} weights)")


if __name__ == "__main__":
    main()
