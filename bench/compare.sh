#!/usr/bin/env bash
# Side-by-side: hive-gpu bench, then FAISS (latest faiss-cpu from PyPI in .venv, and Debian's
# python3-faiss under /usr/bin/python3) on exactly the same vectors and ground truth, then
# one markdown table. Builds nothing: expects build/release/tools/hive-gpu (scripts/run builds it),
# build/tools/hive-gpu or $HIVE_GPU_BIN.
#
#   bench/compare.sh --scenario fashion       # fashion-mnist, l2, k=10, batches 1,100,10000
#   bench/compare.sh --scenario random-ip     # random:100000:128, ip, k=10, batches 1,1000, f32 and f16
#   bench/compare.sh --dataset clustered:50000:96 --metric cosine --storage f32,bf16 --batch 1,256
#
# Options (all optional): --dataset SPEC --metric M --storage LIST --k K --batch LIST
#   --queries NQ --seed S --b1-queries N --time-budget S --backend NAME --out DIR
#   --skip-pypi --skip-debian --no-venv-setup
#   --omp-wait-policy P   OMP_WAIT_POLICY for the FAISS runs (default PASSIVE; "default" leaves
#                         it unset): libgomp's spinning threads otherwise fight OpenBLAS's
#                         threads and other processes for the cores, slowing FAISS up to 5x
# Environment: HIVE_GPU_BIN, HIVE_GPU_DATA_DIR (default ./data), HIVE_GPU_PYTHON (python
# used to create .venv, default python3), HIVE_GPU_VENV (default .venv),
# HIVE_GPU_PEER_OMP_WAIT_POLICY (default for --omp-wait-policy).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${HIVE_GPU_BIN:-}
if [[ -z "$BIN" ]]; then  # scripts/run builds into build/release
  for b in "$ROOT/build/release/tools/hive-gpu" "$ROOT/build/tools/hive-gpu"; do
    [[ -x "$b" ]] && { BIN=$b; break; }
  done
  BIN=${BIN:-$ROOT/build/release/tools/hive-gpu}
fi
DATA_DIR=${HIVE_GPU_DATA_DIR:-$ROOT/data}
VENV=${HIVE_GPU_VENV:-$ROOT/.venv}
PY_FOR_VENV=${HIVE_GPU_PYTHON:-python3}
DEBIAN_PY=/usr/bin/python3

dataset=fashion-mnist metric=l2 storage=f32 k=10 batch=1,100,10000
queries="" seed=42 b1q="" budget="" backend=auto out="" skip_pypi=0 skip_debian=0 venv_setup=1
omp_wait=${HIVE_GPU_PEER_OMP_WAIT_POLICY-PASSIVE}

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario)
      case "${2:-}" in
        fashion|1) dataset=fashion-mnist metric=l2 k=10 batch=1,100,10000 storage=f32 ;;
        random-ip|2) dataset=random:100000:128 metric=ip k=10 batch=1,1000 storage=f32,f16 ;;
        *) echo "compare.sh: unknown scenario '${2:-}' (fashion or random-ip)" >&2; exit 2 ;;
      esac
      shift 2 ;;
    --dataset) dataset=$2; shift 2 ;;
    --metric) metric=$2; shift 2 ;;
    --storage) storage=$2; shift 2 ;;
    --k) k=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --b1-queries) b1q=$2; shift 2 ;;
    --time-budget) budget=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --skip-pypi) skip_pypi=1; shift ;;
    --skip-debian) skip_debian=1; shift ;;
    --no-venv-setup) venv_setup=0; shift ;;
    --omp-wait-policy) omp_wait=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ ! -x "$BIN" ]]; then
  echo "compare.sh: $BIN not found: build it first (cmake --build build --target hive-gpu) or set HIVE_GPU_BIN" >&2
  exit 1
fi

tag=$(printf '%s-%s-k%s' "$dataset" "$metric" "$k" | tr -c 'A-Za-z0-9_.-' '_')
out=${out:-$DATA_DIR/compare/$tag}
mkdir -p "$out"
dump="$out/data"

# --- peers available? -------------------------------------------------------------------
# Debian's faiss 1.7.3, its pthreads OpenBLAS and the data set come from scripts/setup.
if [[ $venv_setup -eq 1 ]]; then
  "$ROOT/scripts/setup" --peers >&2
fi
pypi_py=""
if [[ $skip_pypi -eq 0 ]]; then
  if ! "$VENV/bin/python" -c 'import faiss, numpy' >/dev/null 2>&1; then
    if [[ $venv_setup -eq 1 ]]; then
      echo "setting up $VENV with faiss-cpu and numpy ..." >&2
      [[ -x "$VENV/bin/python" ]] || "$PY_FOR_VENV" -m venv "$VENV"
      "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2 || true
      "$VENV/bin/python" -m pip install --quiet faiss-cpu numpy >&2
    fi
  fi
  if "$VENV/bin/python" -c 'import faiss, numpy' >/dev/null 2>&1; then
    pypi_py="$VENV/bin/python"
  else
    echo "compare.sh: faiss-cpu is not importable from $VENV: skipping that peer" >&2
  fi
fi
debian_ok=0
if [[ $skip_debian -eq 0 ]]; then
  if env -u VIRTUAL_ENV -u PYTHONPATH PYTHONNOUSERSITE=1 "$DEBIAN_PY" -s -c 'import faiss, numpy' >/dev/null 2>&1; then
    debian_ok=1
  else
    echo "compare.sh: $DEBIAN_PY cannot import faiss: skipping Debian's faiss" \
         "(apt-get install python3-faiss libopenblas0-pthread)" >&2
  fi
fi

# FAISS runs with OpenMP threads that sleep when idle unless told otherwise (see above).
peer_env=(env -u VIRTUAL_ENV -u PYTHONPATH)
if [[ -n "$omp_wait" && "$omp_wait" != default ]]; then
  peer_env+=(OMP_WAIT_POLICY="$omp_wait")
fi

# --- runs ---------------------------------------------------------------------------------
common=(--dataset "$dataset" --metric "$metric" --k "$k" --batch "$batch" --seed "$seed" --backend "$backend"
        --data-dir "$DATA_DIR" --no-progress)
[[ -n "$queries" ]] && common+=(--queries "$queries")
[[ -n "$b1q" ]] && common+=(--b1-queries "$b1q")
[[ -n "$budget" ]] && common+=(--time-budget "$budget")

files=()
IFS=',' read -r -a storages <<<"$storage"
first=1
for s in "${storages[@]}"; do
  ours="$out/hive-gpu-$s.json"
  extra=()
  [[ $first -eq 1 ]] && extra=(--dump-dir "$dump")
  echo "== hive-gpu bench --storage $s" >&2
  "$BIN" bench "${common[@]}" --storage "$s" --json "$ours" "${extra[@]}"
  echo >&2
  files+=("$ours")
  first=0
  if [[ -n "$pypi_py" ]]; then
    echo "== faiss-cpu (PyPI) --storage $s" >&2
    "${peer_env[@]}" "$pypi_py" "$ROOT/bench/peers.py" run --data "$dump" --ours "$ours" --out "$out/faiss-pypi-$s.json"
    files+=("$out/faiss-pypi-$s.json")
  fi
  if [[ $debian_ok -eq 1 ]]; then
    echo "== faiss (Debian python3-faiss) --storage $s" >&2
    "${peer_env[@]}" PYTHONNOUSERSITE=1 "$DEBIAN_PY" -s "$ROOT/bench/peers.py" run \
      --data "$dump" --ours "$ours" --out "$out/faiss-debian-$s.json"
    files+=("$out/faiss-debian-$s.json")
  fi
done

echo
table_py=$DEBIAN_PY; [[ -x "$table_py" ]] || table_py=python3
"$table_py" "$ROOT/bench/peers.py" table "${files[@]}" | tee "$out/table.md"
echo
echo "results: $out" >&2
