"""Build the Cython scoring core and map the top-level folders into the onyxserve package.

Metadata lives in pyproject.toml; this file only knows what setuptools cannot declare
statically: the folder -> package mapping and the compiled extensions.

ONYXSERVE_CYTHON_DEBUG=1 turns bounds and wraparound checks back on (and -O0 -g), for a
debug test run; the default build assumes what the Python wrappers have validated. Switching
between the two needs ``build_ext --inplace --force`` (scripts/test.sh does), since the
generated C file and the .so are otherwise reused.
"""

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

# Top-level folder -> the onyxserve subpackage it is (the layout the owner asked for). Everything
# below them is discovered, so a new subpackage cannot silently miss the wheel.
FOLDERS = {
    "onyxserve": "onyxserve",
    "onyxserve.core": "core",
    "onyxserve.server": "server",
    "onyxserve.protos": "protos",
    "onyxserve.clients": "clients",
    "onyxserve.training": "training",
    "onyxserve.repository": "repository",
}


def discover_packages(root: Path = Path(__file__).resolve().parent) -> list[str]:
    packages = []
    for package, folder in FOLDERS.items():
        packages.append(package)
        packages += [f"{package}.{sub}" for sub in find_packages(str(root / folder))]
    return packages


DEBUG = os.environ.get("ONYXSERVE_CYTHON_DEBUG", "") not in ("", "0")

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
# -ffp-contract=off: the kernel's ``(x - off) / div * sc + sh`` must round after each operation,
# as numpy does in scikit-learn's scalers; a compiler allowed to fuse ``* sc + sh`` into an FMA
# (GCC's default where the target has one, e.g. -march=native) would round once, differently.
compile_args = (["-O0", "-g"] if DEBUG else ["-O3"]) + ["-ffp-contract=off"]

extensions = [
    Extension(
        "onyxserve.core._normalize",
        ["core/_normalize.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    )
]

setup(
    packages=discover_packages(),
    package_dir=FOLDERS,
    package_data={"onyxserve.core": ["*.pxd", "*.pxi", "*.pyx"], "onyxserve.protos": ["*.proto", "*.pyi"]},
    ext_modules=cythonize(extensions, compiler_directives=directives, force=True),
    zip_safe=False,
)
