"""Runtime hook of the CPU bundle: its torch keeps only the CUDA libraries the dynamic linker needs (cuDNN's
engines, cuSOLVER and the rest are left out), so CUDA is hidden from it and the one device choice picks the
CPU even on a machine with a GPU. A bundle built with KDX_BUNDLE_CUDA=1 carries everything and has no such hook."""
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
