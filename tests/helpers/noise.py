"""TensorFlow start-up noise as it reaches stderr, and lines that must never be dropped."""

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796162699.483277    3821 port.cc:153] oneDNN custom operations are on. You "
    b"may see slightly different numerical results due to floating-point round-off errors.\n",
    b"I0000 00:00:1796162699.483754    3821 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.\n",
    b"I0000 00:00:1796162699.607882    3821 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.\n",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.\n",
    b"E0000 00:00:1796162749.887049    4182 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n",
    b"2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could "
    b"not find cuda drivers on your machine, GPU will not be used.\n",
    b"E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory: "
    b"Attempting to register factory for plugin cuDNN when one has already been registered\n",
    b"W0000 00:00:1758131045.228 3722035 computation_placer.cc:177] computation placer already "
    b"registered.\n",
]
KEPT = [
    b"F0000 00:00:1796162699.6 3821 op_kernel.cc:1] Check failed: kernel registered twice\n",
    b"E0000 00:00:1796162699.6 3821 dso_loader.cc:1] libtensorflow_framework.so.2: bad ELF\n",
    b"Traceback (most recent call last):\n",
    b"Fatal Python error: Segmentation fault\n",
]
