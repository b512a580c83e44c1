#!/usr/bin/env bash
# Run, or continue, a real campaign through `ray job submit` on this machine's GPUs.
#
#   bash experiments/gpu/campaign_job.sh CONFIG [SECONDS] [CAMPAIGN RUN OPTIONS...]
#
# Starts a loopback-only Ray head holding every GPU, submits
# `python -m llmco2 campaign run CONFIG --time-limit ...` as a Ray job, follows it, and stops
# it before SECONDS (default 540) so that a device call with a 600 s limit returns cleanly (the
# driver's own time limit, 40 s less, ends it first without cutting off an engine start or a
# point: see orchestrator/time_limit.py; the stop is what catches a round's training); the campaign
# database lives in $STATE (default /tmp/llmco2-campaign), so running the same command again
# continues the campaign (the driver releases what the stopped one held). The database, the
# job's log, the report and the exported dataset are copied to $OUT. A database carried in as
# ./campaign-state/campaign.db seeds $STATE on a fresh machine, and a compile cache carried in as
# ./campaign-state/compile-cache.tgz warms its engine starts.
set -uo pipefail
config=$1
seconds=${2:-540}
shift $(( $# < 2 ? $# : 2 ))  # what is left goes to `campaign run` (e.g. --force)
out=${OUT:-/tmp/campaign-out}
state=${STATE:-/tmp/llmco2-campaign}
begin=$(date +%s)
mkdir -p "$state" "$out"
if [[ ! -f $state/campaign.db && -f campaign-state/campaign.db ]]; then
    cp campaign-state/campaign.db "$state/campaign.db"
fi
# A database carried in from an older release (a data folder's campaign.db) is refused by the
# driver until it is migrated: migrate it here rather than lose a device call to the refusal.
if [[ -f $state/campaign.db ]]; then
    PYTHONPATH=/tmp/site:$PWD python -m llmco2 db upgrade --db "sqlite:///$state/campaign.db" \
        || exit 1
fi
# `ray job submit` needs the dashboard's HTTP server, i.e. ray[default]'s extra packages, which the
# ../shared/gpu bundle leaves out: carried as .gpu-bundle/extras/ray-default.tgz (site/...).
if [[ -f .gpu-bundle/extras/ray-default.tgz && ! -d /tmp/site/aiohttp_cors ]]; then
    tar -xzf .gpu-bundle/extras/ray-default.tgz -C /tmp
fi
# One compile cache for every engine start of the campaign (vLLM's, Inductor's and Triton's: see
# workers/engines/vllm_engine.py), kept in $STATE and carried to the next machine as
# campaign-state/compile-cache.tgz when it is small enough for a device call.
export LLMCO2_COMPILE_CACHE=${LLMCO2_COMPILE_CACHE:-$state/compile-cache}
carry_mib=${CACHE_CARRY_MIB:-40}
if [[ ! -d $LLMCO2_COMPILE_CACHE && -f campaign-state/compile-cache.tgz ]]; then
    mkdir -p "$LLMCO2_COMPILE_CACHE" && tar -xzf campaign-state/compile-cache.tgz -C "$LLMCO2_COMPILE_CACHE"
fi
# vLLM's engine core in the actor's own process (a TP 1 engine then spawns no process: torch and
# vLLM are imported once per actor): on one H100 a warm Llama-3.1-8B start took 32.7 s this way
# against 83.6 s cold in vLLM's own processes, the reference requests' energy within 0.8 % (2 %
# on a short prefill-heavy one). Its close frees its CUDA graphs and caches too
# (workers.engines.vllm_engine.release_cuda_graphs), so that the actor loads the next
# configuration in place where the GPU's memory is back (26-28 s on an H100 against 52-58 s in a
# new actor), else in a new actor. VLLM_ENABLE_V1_MULTIPROCESSING=1 to compare.
export VLLM_ENABLE_V1_MULTIPROCESSING=${VLLM_ENABLE_V1_MULTIPROCESSING:-0}
# Loopback only (see workers/cluster.py: LOCAL_RAY_ENVIRONMENT) and token auth on.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=token PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
    VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONPATH=/tmp/site:$PWD
if [[ -z ${RAY_AUTH_TOKEN:-} && ! -f ~/.ray/auth_token ]]; then
    mkdir -p ~/.ray && python -c 'import secrets; print(secrets.token_hex(32))' > ~/.ray/auth_token
fi
ray() { python -c 'import sys; from ray.scripts.scripts import main; sys.argv[0] = "ray"; main()' "$@"; }
ray start --head --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 --port 6380 \
    --dashboard-port 8265 --disable-usage-stats > "$out/ray-start.log" 2>&1 \
    || { cat "$out/ray-start.log"; exit 1; }
address=http://127.0.0.1:8265
job=""
for _ in $(seq 30); do  # the job agent comes up some seconds after the head
    ray job submit --address $address --no-wait --working-dir . \
        --runtime-env-json '{"excludes": [".gpu-bundle", ".git", "campaign-state"]}' \
        -- python -m llmco2 campaign run "$config" --db "sqlite:///$state/campaign.db" \
        --report "$state/report" --time-limit $(( seconds - 40 - ($(date +%s) - begin) )) "$@" \
        > "$out/submit.log" 2>&1
    job=$(grep -o "raysubmit_[A-Za-z0-9]*" "$out/submit.log" | head -1)
    [[ -n $job ]] && break
    grep -q "No available agent\|Failed to connect" "$out/submit.log" || { tail -5 "$out/submit.log"; break; }
    sleep 2
done
echo "job ${job:-not submitted} after $(( $(date +%s) - begin )) s"
status=""
while [[ -n $job ]]; do
    status=$(ray job status --address $address "$job" 2>&1 | grep -oiE "succeeded|failed|stopped" | head -1 | tr a-z A-Z)
    [[ -n $status ]] && break
    if (( $(date +%s) - begin > seconds )); then
        echo "stopping the job at $(( $(date +%s) - begin )) s (rerun to continue)"
        ray job stop --address $address "$job" > /dev/null 2>&1
        status=STOPPED
        break
    fi
    sleep 5
done
[[ -n $job ]] && ray job logs --address $address "$job" > "$out/job.log" 2>&1
# Where each engine start went (vLLM logs its phases in the actors' logs, not the job's): every
# timestamped line of vLLM's own log, in time order (the process that wrote it at the end of
# the line), so that the time before the weights load
# (engine-core and worker processes, imports, CUDA and distributed set-up) splits as finely as
# weight init, torch.compile, KV-cache profiling and CUDA-graph capture.
grep -hE "(INFO|WARNING|ERROR) [0-9]{2}-[0-9]{2} [0-9:]{8} " \
    /tmp/ray/session_latest/logs/worker-*.out /tmp/ray/session_latest/logs/worker-*.err 2>/dev/null \
    | sed -E 's/^(\([^)]*\)) (.*)$/\2 \1/' | sort -k2,3 -s | cut -c1-300 | tail -6000 \
    > "$out/engine-start.log"
# Why an engine failed to start: the engine core logs the root cause in its own process, and the
# driver only sees "Engine core initialization failed. See root cause above.": the exception lines
# first (what the next session reads), then whole tracebacks (the root cause ends them).
grep -hE "^(\([A-Za-z0-9_-]+ pid=[0-9]+\) )?(ERROR [^]]*\] )?[A-Za-z_.]*(Error|Exception): " \
    /tmp/ray/session_latest/logs/worker-*.err 2>/dev/null | cut -c1-400 | sort | uniq -c \
    | sort -rn | head -40 > "$out/engine-errors.log"
echo "---- tracebacks" >> "$out/engine-errors.log"
grep -hE -B2 -A80 "Traceback|not supported|NotImplemented" \
    /tmp/ray/session_latest/logs/worker-*.err 2>/dev/null \
    | grep -v "logging.cc" | cut -c1-400 | tail -1500 >> "$out/engine-errors.log"
ray stop --force > /dev/null 2>&1
cp "$state/campaign.db" "$out/campaign.db" 2>/dev/null
if [[ -d $LLMCO2_COMPILE_CACHE ]]; then
    tar -czf "$state/compile-cache.tgz" -C "$LLMCO2_COMPILE_CACHE" .
    size=$(( $(stat -c %s "$state/compile-cache.tgz") / 1048576 ))
    if (( size <= carry_mib )); then
        cp "$state/compile-cache.tgz" "$out/compile-cache.tgz"
        echo "compile cache: $size MiB (carry it back as campaign-state/compile-cache.tgz)"
    else
        echo "compile cache: $size MiB, over CACHE_CARRY_MIB=$carry_mib: not copied to \$OUT"
    fi
fi
[[ -d $state/report ]] && cp -r "$state/report" "$out/report"
grep -E "^round|stop|report|export|Error|error" "$out/job.log" | tail -20
echo "job $status after $(( $(date +%s) - begin )) s"
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader
