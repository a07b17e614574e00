#!/bin/sh
# Lab stand-in for the k3s install script (https://get.k3s.io), same interface:
#   INSTALL_K3S_SKIP_DOWNLOAD=true  use the k3s binary already in $BIN_DIR
#   INSTALL_K3S_VERSION=vX.Y.Z+k3sN the version to download (when not skipping the download)
#   INSTALL_K3S_EXEC="server|agent [flags]"  (default: agent when K3S_URL is set, else server)
#   GITHUB_URL  release base (default https://github.com/k3s-io/k3s/releases)
# Writes the systemd unit + env file, symlinks, killall/uninstall scripts, enables the unit and
# restarts it only when the binary, unit or env file changed (like the real script).
set -e

BIN_DIR=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
GITHUB_URL=${GITHUB_URL:-https://github.com/k3s-io/k3s/releases}

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR]  $*" >&2; exit 1; }

set -- ${INSTALL_K3S_EXEC}
case "${1:-}" in
    server|agent) CMD_K3S=$1; shift ;;
    *) if [ -n "${K3S_URL:-}" ]; then CMD_K3S=agent; else CMD_K3S=server; fi ;;
esac
CMD_K3S_EXEC="${CMD_K3S} $*"
if [ "${CMD_K3S}" = server ]; then SYSTEM_NAME=k3s; UNINSTALL=k3s-uninstall.sh
else SYSTEM_NAME=k3s-agent; UNINSTALL=k3s-agent-uninstall.sh; fi
FILE_SERVICE=${SYSTEMD_DIR}/${SYSTEM_NAME}.service
FILE_ENV=${FILE_SERVICE}.env

installed_hashes() { sha256sum "${BIN_DIR}/k3s" "${FILE_SERVICE}" "${FILE_ENV}" 2>&1 || true; }
PRE_HASHES=$(installed_hashes)

case $(uname -m) in
    x86_64|amd64) SUFFIX=; ARCH=amd64 ;;
    aarch64|arm64) SUFFIX=-arm64; ARCH=arm64 ;;
    armv7l|arm*) SUFFIX=-armhf; ARCH=arm ;;
    *) fatal "Unsupported architecture $(uname -m)" ;;
esac

download_k3s() {
    [ -n "${INSTALL_K3S_VERSION:-}" ] || fatal "INSTALL_K3S_VERSION is required by the lab stand-in"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    info "Downloading binary ${GITHUB_URL}/download/${INSTALL_K3S_VERSION}/k3s${SUFFIX}"
    curl -fsSL -o "$tmp/sha256sum.txt" "${GITHUB_URL}/download/${INSTALL_K3S_VERSION}/sha256sum-${ARCH}.txt"
    curl -fsSL -o "$tmp/k3s" "${GITHUB_URL}/download/${INSTALL_K3S_VERSION}/k3s${SUFFIX}"
    expected=$(grep " k3s${SUFFIX}\$" "$tmp/sha256sum.txt" | awk '{print $1}')
    actual=$(sha256sum "$tmp/k3s" | awk '{print $1}')
    [ "$expected" = "$actual" ] || fatal "Download sha256 does not match ${expected}, got ${actual}"
    chmod 755 "$tmp/k3s"
    mv -f "$tmp/k3s" "${BIN_DIR}/k3s"
}

if [ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" = true ]; then
    info "Skipping k3s download and verify"
    [ -x "${BIN_DIR}/k3s" ] || fatal "${BIN_DIR}/k3s is missing"
else
    download_k3s
fi

for cmd in kubectl crictl ctr; do
    [ "$cmd" = kubectl ] && [ "${CMD_K3S}" != server ] && continue
    if [ ! -e "${BIN_DIR}/$cmd" ]; then
        info "Creating ${BIN_DIR}/$cmd symlink to k3s"
        ln -sf k3s "${BIN_DIR}/$cmd"
    fi
done

info "Creating killall script ${BIN_DIR}/k3s-killall.sh"
cat > "${BIN_DIR}/k3s-killall.sh" <<KILLALL
#!/bin/sh
# lab stand-in: stop every k3s unit
systemctl stop k3s k3s-agent 2>/dev/null || true
KILLALL
chmod 755 "${BIN_DIR}/k3s-killall.sh"

info "Creating uninstall script ${BIN_DIR}/${UNINSTALL}"
cat > "${BIN_DIR}/${UNINSTALL}" <<UNINSTALL
#!/bin/sh
set -x
${BIN_DIR}/k3s-killall.sh
systemctl disable ${SYSTEM_NAME}
rm -f ${FILE_SERVICE} ${FILE_ENV}
if [ -f ${SYSTEMD_DIR}/k3s.service ] || [ -f ${SYSTEMD_DIR}/k3s-agent.service ]; then
    rm -f ${BIN_DIR}/${UNINSTALL}
    exit 0
fi
for cmd in kubectl crictl ctr; do
    [ -L ${BIN_DIR}/\$cmd ] && rm -f ${BIN_DIR}/\$cmd
done
rm -rf /etc/rancher/k3s /run/k3s /var/lib/rancher/k3s /var/lib/kubelet
rm -f ${BIN_DIR}/k3s ${BIN_DIR}/k3s-killall.sh ${BIN_DIR}/${UNINSTALL}
UNINSTALL
chmod 755 "${BIN_DIR}/${UNINSTALL}"

info "env: Creating environment file ${FILE_ENV}"
umask 077
env | grep -E '^(K3S|CONTAINERD)_' | sed -e 's/=\(.*\)/="\1"/' > "${FILE_ENV}" || true
umask 022

info "systemd: Creating service file ${FILE_SERVICE}"
if [ "${CMD_K3S}" = server ]; then TYPE=notify; else TYPE=exec; fi
{
    echo "[Unit]"
    echo "Description=Lightweight Kubernetes"
    echo "Documentation=https://k3s.io"
    echo "Wants=network-online.target"
    echo "After=network-online.target"
    echo
    echo "[Install]"
    echo "WantedBy=multi-user.target"
    echo
    echo "[Service]"
    echo "Type=${TYPE}"
    echo "EnvironmentFile=-${FILE_ENV}"
    echo "KillMode=process"
    echo "Delegate=yes"
    echo "Restart=always"
    echo "RestartSec=5s"
    echo "ExecStart=${BIN_DIR}/k3s \\"
    for word in ${CMD_K3S_EXEC}; do echo "    '${word}' \\"; done
    echo
} > "${FILE_SERVICE}"

systemctl daemon-reload >/dev/null
info "systemd: Enabling ${SYSTEM_NAME} unit"
systemctl enable "${SYSTEM_NAME}" >/dev/null 2>&1

POST_HASHES=$(installed_hashes)
if [ "${PRE_HASHES}" = "${POST_HASHES}" ] && [ "${INSTALL_K3S_FORCE_RESTART:-}" != true ]; then
    info "No change detected so skipping service start"
    exit 0
fi
info "systemd: Starting ${SYSTEM_NAME}"
systemctl restart "${SYSTEM_NAME}"
