"""Write tests/golden/waveunet.npz: Wave-U-Net-Pytorch's own model run on a fixed input with fixed weights.

Reference: f90/Wave-U-Net-Pytorch at 86c113da51540c94b01a91fbf17227f0e9c3c274 (``model/``). Usage::

    git clone https://github.com/f90/Wave-U-Net-Pytorch && git -C Wave-U-Net-Pytorch checkout 86c113d
    python tests/golden/make_waveunet.py Wave-U-Net-Pytorch

A small network (3 levels of 8·2^i features, mono; the port's defaults otherwise: kernel 5, stride 4,
group norm, fixed sinc resampling) with freshly initialised weights, random GroupNorm affine parameters
(so that they matter), in evaluation mode (estimates clipped to [-1, 1]).
tests/test_model_parity.py::test_waveunet_matches_the_port_golden loads the weights into ours and compares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

LEVELS, FEATURES, TARGET = 3, 8, 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="a Wave-U-Net-Pytorch checkout (the folder holding model/)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("waveunet.npz"))
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference))
    from model.waveunet import Waveunet

    torch.manual_seed(0)
    model = Waveunet(1, [FEATURES * 2**i for i in range(LEVELS)], 1, ["target"], kernel_size=5,
                     target_output_size=TARGET, conv_type="gn", res="fixed", separate=1, depth=1, strides=4)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".norm." in name:
                parameter.add_(torch.randn_like(parameter) * 0.2)
    model.eval()
    x = torch.randn(2, 1, model.input_size, generator=torch.Generator().manual_seed(1)) * 0.5
    with torch.no_grad():
        y = model(x, "target")["target"]
    arrays = {f"state/{key.removeprefix('waveunets.target.')}": value.numpy()
              for key, value in model.state_dict().items()}
    np.savez_compressed(args.out, input=x.numpy(), output=y.numpy(), **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {model.input_size} samples in, "
          f"{model.output_size} out")


if __name__ == "__main__":
    main()
