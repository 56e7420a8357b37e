#!/bin/sh
# check-flavour.sh FLAVOUR: run in the image build (images/Dockerfile, venv stage), fails it when the flavour's
# runtime is not complete. cuda: every library onnxruntime-gpu's CUDA provider links against is in the image,
# except the driver's libcuda.so.1, which only the host has (a GPU-less build machine included).
set -eu
PY=/opt/openscore/venv/bin/python3
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
case "$1" in
  cpu)
    "$PY" -c "import onnxruntime as ort; assert ort.get_available_providers()[-1] == 'CPUExecutionProvider'" ;;
  cuda)
    export LD_LIBRARY_PATH="$SITE/nvidia/cu13/lib:$SITE/nvidia/cudnn/lib"
    provider="$SITE/onnxruntime/capi/libonnxruntime_providers_cuda.so"
    [ -f "$provider" ] || { echo "check-flavour: $provider is missing: is onnxruntime-gpu installed?" >&2; exit 1; }
    missing="$(ldd "$provider" | awk '/not found/ {print $1}' | grep -v '^libcuda\.so\.1$' || true)"
    if [ -n "$missing" ]; then echo "check-flavour: the CUDA provider's libraries are missing: $missing" >&2; exit 1; fi
    for lib in libcudnn.so.9 libcublasLt.so.13 libcufft.so.12 libcurand.so.10 libcudart.so.13; do
      [ -n "$(find "$SITE/nvidia" -name "$lib" -print -quit)" ] || { echo "check-flavour: $lib is missing" >&2; exit 1; }
    done
    "$PY" -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers()" ;;
  opencl)
    "$PY" -c "import pyopencl, onnx, onnxruntime" ;;
  *) echo "check-flavour: unknown flavour $1" >&2; exit 1 ;;
esac
echo "check-flavour: $1 ok"
