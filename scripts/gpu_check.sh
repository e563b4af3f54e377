#!/usr/bin/env bash
# The GPU measurements of issue 29 as one short script, for a machine with an NVIDIA GPU.
#
#   bash scripts/gpu_check.sh prepare     # here, with a network: the panorama and the wheels a
#                                         # GPU machine may lack, into .device-data/ (ignored)
#   bash scripts/gpu_check.sh run [OUT]   # there: prints everything and keeps it in OUT/
#
# "run" takes the engine's environment (.engine/env) when there is one, else python3 with its
# own CUDA build of PyTorch, adding open_clip from .device-data/wheels when it is missing. It
# measures, each in one run: the single-process engine against the model alone in fp32, fp16
# and bf16 on whole 4096×2048 panoramas, then fp16 on the four 640-pixel views a fetch saves,
# then Ray Data with one GPU actor when Ray is installed (its wheel is too big to carry).
# GPU_CHECK_DEVICE=cpu GPU_CHECK_SMALL=1 runs the same steps here, small, to check the script.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.device-data
# With the model on a GPU every core can decode (the engine's own default stops at 8).
WORKERS=$(nproc 2>/dev/null || echo 8)
DEVICE=${GPU_CHECK_DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then
    PRECISIONS=fp32,bf16 HALF=bf16  # fp16 is refused on a CPU
else
    PRECISIONS=fp32,fp16,bf16 HALF=fp16
fi
if [ -n "${GPU_CHECK_SMALL:-}" ]; then
    PANORAMAS=8 VIEWS=4 NAIVE=2 RAY_PANORAMAS=8 BATCH=8
else
    PANORAMAS=1000 VIEWS=500 NAIVE=20 RAY_PANORAMAS=4000 BATCH=512
fi

prepare() {
    mkdir -p "$DATA/wheels"
    cp ../shared/data/images/equirectangular/*.jpg "$DATA/"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$DATA/wheels" open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.2.13
    du -sh "$DATA"
}

run() {
    local out=${1:-gpu-results}
    mkdir -p "$out"
    local python=python3
    [ -x .engine/env/bin/python ] && python=.engine/env/bin/python
    if ! "$python" -c "import open_clip" 2>/dev/null; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mus-site \
            "$DATA"/wheels/*.whl
        export PYTHONPATH=/tmp/mus-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    # open_clip also imports these; a GPU machine's PyTorch image has them (prepare fetches
    # only what such images lack).
    "$python" -c "import open_clip, regex, tqdm, torchvision, PIL, numpy" || {
        echo "This Python lacks a package the engine needs (above): use the engine's" \
            "environment, or carry the missing wheels into $DATA/wheels." >&2
        exit 1
    }
    export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
    {
        date -u
        nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
        "$python" -c "import torch; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available() and torch.cuda.get_device_name(0))"
    } 2>&1 | tee "$out/gpu_device.txt"
    local panorama
    panorama=$(ls "$DATA"/pannellum_examplepano_nonurban.jpg 2>/dev/null \
        || echo ../shared/data/images/equirectangular/pannellum_examplepano_nonurban.jpg)
    "$python" scripts/bench_classify.py --device "$DEVICE" --source "$panorama" \
        --precision "$PRECISIONS" --panoramas "$PANORAMAS" --naive "$NAIVE" --rounds 3 \
        --batch-size "$BATCH" --workers "$WORKERS" 2>&1 | tee "$out/gpu_classify_panoramas.txt"
    "$python" scripts/bench_classify.py --device "$DEVICE" --source "$panorama" \
        --precision "$HALF" --inputs views --panoramas "$VIEWS" --naive 0 --rounds 3 \
        --batch-size "$BATCH" --workers "$WORKERS" 2>&1 | tee "$out/gpu_classify_views.txt"
    if "$python" -c "import ray" 2>/dev/null; then
        local images=$DATA
        ls "$DATA"/*.jpg >/dev/null 2>&1 || images=../shared/data/images/equirectangular
        "$python" scripts/bench_ray.py --model ViT-B-32 --device "$DEVICE" --precision "$HALF" \
            --panoramas "$RAY_PANORAMAS" --batch-size "$BATCH" --images "$images" 2>&1 \
            | tee "$out/gpu_ray.txt"
    else
        echo "Ray is not installed here: scripts/bench_ray.py --device $DEVICE not run" \
            | tee "$out/gpu_ray.txt"
    fi
}

case "${1:-}" in
    prepare) prepare ;;
    run) run "${2:-}" ;;
    *) echo "usage: bash scripts/gpu_check.sh prepare | run [OUT]" >&2; exit 2 ;;
esac
