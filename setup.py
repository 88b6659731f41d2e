"""Build tlsrekey: one extension, tlsrekey._tlsrekey, from the CPython shim
(python/src/*.c) and the shared core (csrc/*.c), linked against OpenSSL 3.

The metadata is in pyproject.toml; this file only describes the extension. The
compiler flags from the environment (CFLAGS, LDFLAGS) are honoured by setuptools,
which is how the sanitizer build is made:

    CFLAGS='-fsanitize=address,undefined -fno-omit-frame-pointer' \\
    LDFLAGS='-fsanitize=address,undefined' python setup.py build_ext ...

OPENSSL_DIR=/prefix builds against an OpenSSL installed under /prefix instead of
the system's.
"""
import glob
import os

from setuptools import Extension, setup

# setuptools wants paths relative to this file's folder; pip runs us from there.
HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)

sources = sorted(glob.glob("python/src/*.c")) + sorted(glob.glob("csrc/*.c"))
headers = sorted(glob.glob("python/src/*.h")) + sorted(glob.glob("csrc/*.h"))
if not any(s.startswith("csrc/") for s in sources):
    raise SystemExit("setup.py: csrc/*.c is missing: the sdist must include the core")

include_dirs = ["csrc", "python/src"]
library_dirs = []
openssl_dir = os.environ.get("OPENSSL_DIR")
if openssl_dir:
    include_dirs.append(os.path.join(openssl_dir, "include"))
    for lib in ("lib64", "lib"):
        if os.path.isdir(os.path.join(openssl_dir, lib)):
            library_dirs.append(os.path.join(openssl_dir, lib))

setup(
    ext_modules=[
        Extension(
            "tlsrekey._tlsrekey",
            sources=sources,
            depends=headers,
            include_dirs=include_dirs,
            library_dirs=library_dirs,
            libraries=["ssl", "crypto"],
            extra_compile_args=["-Wall", "-Wextra"],
        )
    ],
)
