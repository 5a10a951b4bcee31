"""Build camfast and its compiled extension camfast._C.

The C++ part (op schemas + CPU kernels) is always built. The CUDA kernels are added when a
CUDA toolkit is found or FORCE_CUDA=1; CAMFAST_CPU_ONLY=1 skips them. They are compiled for
sm_80 and sm_90 plus PTX for compute_90 (DEFAULT_CUDA_ARCHS), so that newer GPUs can JIT the
PTX; TORCH_CUDA_ARCH_LIST overrides the list. The list is compiled into the extension
(camfast.build_info()["cuda_archs"]) and `backend="auto"` checks the device against it.

The built library is copied into camfast/ atomically (a new file renamed over the old one):
processes that already mapped the old library keep a complete file instead of crashing with
SIGBUS on a half-written one.
"""
import glob
import os
import re
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)


def _load(name: str) -> dict:
    """Execute a stdlib-only module of the package without importing the package (and torch)."""
    scope: dict = {}
    with open(os.path.join(ROOT, "camfast", name)) as f:
        exec(f.read(), scope)
    return scope


# SASS for A100 (8.0, also runs on 8.6/8.9) and H100/H200 (9.0), PTX for everything newer.
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"
# Device-code flags of the CUDA kernels; benchmarks/kernel_resources.py reads this list.
NVCC_FLAGS = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]


def _version() -> str:
    return _load("_version.py")["__version__"]


def _has_cudart(home: str) -> bool:
    return any(glob.glob(os.path.join(home, d, "libcudart.so*")) for d in ("lib64", "lib", "targets/*/lib"))


def find_cuda_home():
    """The toolkit root, or None.

    torch guesses CUDA_HOME from the directory of `nvcc` on PATH; where that nvcc is a
    wrapper script (e.g. /usr/local/bin/nvcc) the guess has no libcudart and the link
    fails, so only accept a root that really holds bin/nvcc and libcudart.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for home in candidates:
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")) and _has_cudart(home):
            return home
    return None


def extension_sources(with_cuda: bool):
    cpp = sorted(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")) + glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
    cuda = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp")) + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    return cpp + (cuda if with_cuda else [])


def make_extension():
    cpu_only = os.environ.get("CAMFAST_CPU_ONLY", "0") == "1"
    force = os.environ.get("FORCE_CUDA", "0") == "1"
    cuda_home = None if cpu_only else find_cuda_home()
    with_cuda = not cpu_only and (cuda_home is not None or force)
    if cuda_home:
        # Must happen before torch.utils.cpp_extension is imported: it reads CUDA_HOME then.
        os.environ["CUDA_HOME"] = cuda_home
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    archs = ""
    if with_cuda:
        # Also with a GPU visible: torch would otherwise build for that GPU only ("native"),
        # and the list compiled in must name real architectures for the device check.
        if not os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
        archs = ";".join(a for a in re.split(r"[;,\s]+", os.environ["TORCH_CUDA_ARCH_LIST"]) if a)
    define = [
        ("CAMFAST_VERSION", f'"{_version()}"'),
        ("CAMFAST_SOURCE_HASH", f'"{_load("_srchash.py")["source_hash"](ROOT, with_cuda)}"'),
        ("CAMFAST_CUDA_ARCHS", f'"{archs.replace(";", ",")}"'),  # a ";" would end the shell command
    ]
    # -fopenmp: at::parallel_for expands to "#pragma omp parallel" in our own translation
    # units; without the flag it silently runs on one thread.
    cxx = ["-O3", "-fno-math-errno", "-fopenmp"]  # torch adds the C++ standard it needs (C++20 for 2.14)
    sources = [os.path.relpath(p, ROOT) for p in extension_sources(with_cuda)]
    include = [os.path.join(ROOT, "csrc")]
    if with_cuda:
        define.append(("WITH_CUDA", None))
        ext = CUDAExtension("camfast._C", sources, include_dirs=include, define_macros=define,
                            extra_compile_args={"cxx": cxx, "nvcc": list(NVCC_FLAGS)}, extra_link_args=["-fopenmp"])
    else:
        ext = CppExtension("camfast._C", sources, include_dirs=include, define_macros=define,
                           extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    print(f"camfast: building camfast._C ({'CPU + CUDA ' + archs if with_cuda else 'CPU only'})"
          + (f", CUDA_HOME={cuda_home}" if cuda_home else ""))
    base = BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)

    class build_ext(base):
        def copy_file(self, infile, outfile, *args, **kwargs):
            """Copy to a temporary name, then rename over the destination.

            distutils truncates and rewrites the destination in place: a process that mapped
            the old camfast/_C*.so (a running training job) then faults on pages that are
            gone (SIGBUS). A rename leaves the old inode intact for them."""
            if self.dry_run or not os.path.isfile(infile) or os.path.isdir(outfile):
                return super().copy_file(infile, outfile, *args, **kwargs)
            tmp = f"{outfile}.tmp-{os.getpid()}"
            shutil.copy2(infile, tmp)
            os.replace(tmp, outfile)
            return outfile, True

    return ext, build_ext


ext, build_ext = make_extension()

# camfast/configs holds only data (the presets' yaml): a package of its own so that setuptools
# installs it without warning that it would be ignored.
packages = find_packages(include=["camfast", "camfast.*"]) + ["camfast.kernels", "camfast.configs"]
setup(
    name="camfast",
    version=_version(),
    packages=packages,
    package_dir={"camfast.kernels": "kernels"},
    package_data={"camfast.configs": ["*.yaml"]},
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
)
