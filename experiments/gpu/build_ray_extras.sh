#!/usr/bin/env bash
# Build .gpu-bundle/extras/ray-default.tgz: the packages of ray[default] (the dashboard's HTTP
# server, which `ray job submit` talks to) that the ../shared/gpu bundle leaves out, as CPython
# 3.12 manylinux wheels unpacked under site/. Packages the GPU image or the bundle already has
# (protobuf, requests, pydantic, opentelemetry api/sdk, ...) are left out so nothing is shadowed.
# Carry it with the last bundle part; experiments/gpu/campaign_job.sh unpacks it into /tmp/site.
set -euo pipefail
out=${1:-.gpu-bundle/extras}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
plat=""; for p in manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 \
  manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do plat="$plat --platform $p"; done
# shellcheck disable=SC2086
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none $plat -d "$work/wheels" aiohttp aiohttp_cors grpcio opencensus \
  "opentelemetry-exporter-prometheus==0.66b2" "opentelemetry-proto==1.45.2" "opentelemetry-sdk==1.45.2" \
  "opentelemetry-api==1.45.2" prometheus_client smart_open virtualenv colorful "pydantic==2.14.4"
mkdir -p "$work/stage/site"
for w in "$work"/wheels/*.whl; do
  case "$(basename "$w")" in
    protobuf-*|requests-*|urllib3-*|idna-*|certifi-*|charset_normalizer-*|packaging-*|typing_extensions-*|\
    filelock-*|attrs-*|six-*|cffi-*|cryptography-*|pycparser-*|pydantic*|annotated_types-*|\
    typing_inspection-*|opentelemetry_api-*|opentelemetry_sdk-*|opentelemetry_semantic*) ;;
    *) unzip -q -o "$w" -d "$work/stage/site" ;;
  esac
done
find "$work/stage/site" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$out"
tar -C "$work/stage" -czf "$out/ray-default.tgz" site
echo "built $out/ray-default.tgz ($(du -m "$out/ray-default.tgz" | cut -f1) MB)"
