#!/usr/bin/env bash
# Renders the manifests as a cluster would get them (`kubectl kustomize`)
# and validates every object offline (validate.py: Kubernetes schemas,
# cert-manager and Prometheus Operator CRD schemas, our rules), with a
# self-test that broken variants are refused. Python packages go into a
# virtualenv (VENV, default: a new temporary one).
#
# usage: deploy/validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

command -v kubectl >/dev/null || { echo "validate.sh: needs kubectl (its built-in kustomize renders)" >&2; exit 1; }
VENV=${VENV:-$(mktemp -d)/venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# Pinned: the newest kubernetes-validate (schemas up to 1.37), and the
# newest cloudcoil models for Python 3.11 (cert-manager 1.17, Prometheus
# Operator 0.80 CRDs).
"$VENV/bin/pip" install -q kubernetes-validate==1.37.0 \
  cloudcoil-models-cert-manager==1.17.1.0 cloudcoil-models-prometheus-operator==0.80.1.0

echo "deploy/kubernetes:"
kubectl kustomize deploy/kubernetes | "$VENV/bin/python" deploy/validate.py --self-test
echo "deploy/prometheus-operator:"
kubectl kustomize deploy/prometheus-operator | "$VENV/bin/python" deploy/validate.py
echo "deploy/kubernetes/operator.yaml:"
"$VENV/bin/python" deploy/validate.py <deploy/kubernetes/operator.yaml
