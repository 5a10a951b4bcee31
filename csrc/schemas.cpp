// Op schemas for camfast and the Python module stub of camfast._C.
// Kernels are registered per device in csrc/cpu/ and csrc/cuda/ (the combined loss for both in
// csrc/cam_consistency.cpp); autograd in C++ (csrc/autograd.cpp), so that a call costs no
// Python beyond the one dispatcher call; fake kernels from Python (camfast/registration.py), which only
// tracing needs.
#include <Python.h>
#include <torch/library.h>

#include "common.h"
#include "cpu/reduce.h"

#include <string>

#ifndef CAMFAST_VERSION
#define CAMFAST_VERSION "unknown"
#endif
#ifndef CAMFAST_SOURCE_HASH
#define CAMFAST_SOURCE_HASH "unknown"
#endif
#ifndef CAMFAST_CUDA_ARCHS
#define CAMFAST_CUDA_ARCHS ""
#endif

extern "C" {
// Importing camfast._C loads this library, which runs the TORCH_LIBRARY registrations.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace {

std::string build_info() {
#ifdef WITH_CUDA
  const char* cuda = "1";
#else
  const char* cuda = "0";
#endif
  return std::string("version=") + CAMFAST_VERSION + ";source_hash=" + CAMFAST_SOURCE_HASH +
         ";cuda=" + cuda + ";cuda_archs=" + CAMFAST_CUDA_ARCHS + ";cpu_simd=" + (camfast::use_avx2() ? "avx2" : "baseline");
}

void set_poison(bool enabled) { camfast::set_poison(enabled); }

}  // namespace

TORCH_LIBRARY(camfast, m) {
  m.def("cam_mask(Tensor[] feats, Tensor[] grads, str normalize, float eps) -> Tensor");
  m.def(
      "cam_mask_backward(Tensor grad_mask, Tensor[] feats, Tensor[] grads, str normalize, float eps, "
      "bool need_feats, bool need_grads) -> (Tensor[], Tensor[])");
  m.def("masked_l1(Tensor real, Tensor fake, Tensor mask, str reduction) -> Tensor");
  m.def(
      "masked_l1_backward(Tensor grad_out, Tensor real, Tensor fake, Tensor mask, str reduction, "
      "bool need_real, bool need_fake, bool need_mask) -> (Tensor, Tensor, Tensor)");
  // The public loss in one call per direction: both stages, the low-resolution mask (in
  // acc(real.dtype), as masked_l1 reads it) returned so that autograd can save it.
  m.def(
      "cam_consistency(Tensor real, Tensor fake, Tensor[] feats, Tensor[] grads, str normalize, float eps, "
      "str reduction) -> (Tensor, Tensor)");
  m.def(
      "cam_consistency_backward(Tensor grad_out, Tensor real, Tensor fake, Tensor[] feats, Tensor[] grads, "
      "Tensor mask, str normalize, float eps, str reduction, bool need_real, bool need_fake, bool need_feats, "
      "bool need_grads) -> (Tensor, Tensor, Tensor[], Tensor[])");
  m.def("_build_info", &build_info);
  m.def("_set_poison", &set_poison);
}
