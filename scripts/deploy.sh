#!/usr/bin/env bash
# Deploy Vonix to Kubernetes with the Helm chart in charts/vonix.
#
#   scripts/deploy.sh [options] VERSION      install or upgrade to image tag VERSION (e.g. v1.0.0)
#   scripts/deploy.sh [options] status       release, pods, autoscaler
#   scripts/deploy.sh [options] logs         recent logs of every app pod
#   scripts/deploy.sh [options] rollback [REVISION]   back to REVISION (default: the previous one)
#
# Options (or the environment variable in brackets):
#   --dry-run              print the commands instead of running them
#   --namespace NS         [VONIX_NAMESPACE, default vonix]
#   --release NAME         [VONIX_RELEASE, default vonix]
#   --values FILE          [VONIX_VALUES, default charts/vonix/values-production.yaml]
#   --context CONTEXT      kube context [KUBE_CONTEXT, default: the current one]
#   --timeout DURATION     how long helm waits for the rollout [VONIX_TIMEOUT, default 10m]
#
# It refuses to run without helm, kubectl or a kube context: a half-configured machine must not
# deploy somewhere unexpected. --dry-run reports the same problems but still prints the commands.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/vonix"
NAMESPACE="${VONIX_NAMESPACE:-vonix}"
RELEASE="${VONIX_RELEASE:-vonix}"
VALUES="${VONIX_VALUES:-$CHART/values-production.yaml}"
CONTEXT="${KUBE_CONTEXT:-}"
TIMEOUT="${VONIX_TIMEOUT:-10m}"
DRY_RUN=0

EXIT_USAGE=64
EXIT_PREREQUISITE=69

usage() {
    sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    local code=$1
    shift
    echo "deploy.sh: $*" >&2
    exit "$code"
}

# --- arguments -------------------------------------------------------------------------------
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --namespace) NAMESPACE=${2:?--namespace needs a value}; shift ;;
        --release) RELEASE=${2:?--release needs a value}; shift ;;
        --values) VALUES=${2:?--values needs a value}; shift ;;
        --context) CONTEXT=${2:?--context needs a value}; shift ;;
        --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; args+=("$@"); break ;;
        -*) die $EXIT_USAGE "unknown option $1 (see --help)" ;;
        *) args+=("$1") ;;
    esac
    shift
done
[ ${#args[@]} -ge 1 ] || { usage >&2; exit $EXIT_USAGE; }
action=${args[0]}

# Usage mistakes first: a typo such as "stauts" must not become an image tag.
case $action in
    status|logs) ;;
    rollback)
        revision=${args[1]:-}
        if [ -n "$revision" ] && ! [[ $revision =~ ^[0-9]+$ ]]; then
            die $EXIT_USAGE "rollback REVISION must be a number (see: helm history $RELEASE)"
        fi
        ;;
    *)
        version=$action
        if ! [[ $version =~ ^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]]; then
            die $EXIT_USAGE "'$version' is neither an action (status, logs, rollback) nor a version like v1.0.0"
        fi
        [ -f "$VALUES" ] || die $EXIT_USAGE "values file $VALUES not found"
        ;;
esac

# --- prerequisites ---------------------------------------------------------------------------
problems=()
command -v helm > /dev/null 2>&1 || problems+=("helm is not installed (https://helm.sh/docs/intro/install/)")
if ! command -v kubectl > /dev/null 2>&1; then
    problems+=("kubectl is not installed")
elif [ -n "$CONTEXT" ]; then
    kubectl config get-contexts "$CONTEXT" > /dev/null 2>&1 \
        || problems+=("kube context '$CONTEXT' does not exist (kubectl config get-contexts)")
else
    CONTEXT=$(kubectl config current-context 2> /dev/null) || CONTEXT=""
    [ -n "$CONTEXT" ] \
        || problems+=("no kube context is selected (kubectl config use-context NAME, or --context NAME)")
fi

if [ ${#problems[@]} -gt 0 ]; then
    for problem in "${problems[@]}"; do
        echo "deploy.sh: $problem" >&2
    done
    if [ $DRY_RUN -eq 0 ]; then
        die $EXIT_PREREQUISITE "refusing to run"
    fi
    echo "deploy.sh: --dry-run: printing the commands anyway; a real run would stop here" >&2
fi

# Context flags only when a context is known (a dry run on a machine without one shows none).
helm_context=()
kubectl_context=()
if [ -n "$CONTEXT" ]; then
    helm_context=(--kube-context "$CONTEXT")
    kubectl_context=(--context "$CONTEXT")
fi

# Runs a command, or with --dry-run prints it as one line a shell would accept back.
run() {
    if [ $DRY_RUN -eq 1 ]; then
        local word line=""
        for word in "$@"; do
            if [[ $word =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then
                line+="$word "
            else
                line+="$(printf '%q' "$word") "
            fi
        done
        echo "${line% }"
    else
        "$@"
    fi
}

# --- actions ---------------------------------------------------------------------------------
case $action in
    status)
        run helm status "$RELEASE" --namespace "$NAMESPACE" "${helm_context[@]}"
        run kubectl get deployment,pods,hpa,pdb --namespace "$NAMESPACE" "${kubectl_context[@]}" \
            --selector "app.kubernetes.io/instance=$RELEASE"
        ;;
    logs)
        run kubectl logs --namespace "$NAMESPACE" "${kubectl_context[@]}" \
            --selector "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=app" \
            --prefix --tail 200 --max-log-requests 20
        ;;
    rollback)
        # helm rollback without a revision goes to the previous one.
        rollback=(helm rollback "$RELEASE")
        [ -n "$revision" ] && rollback+=("$revision")
        run "${rollback[@]}" --namespace "$NAMESPACE" "${helm_context[@]}" --wait --timeout "$TIMEOUT"
        ;;
    *)
        # --atomic: a failed rollout (including the pre-upgrade migration Job) is rolled back.
        run helm upgrade --install "$RELEASE" "$CHART" \
            --namespace "$NAMESPACE" --create-namespace "${helm_context[@]}" \
            --values "$VALUES" --set-string "image.tag=$version" \
            --atomic --wait --timeout "$TIMEOUT"
        ;;
esac
