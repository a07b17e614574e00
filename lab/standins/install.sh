#!/bin/sh
# Lab stand-in for the k3s install script (https://get.k3s.io, k3s-io/k3s install.sh), written for the lab.
# It behaves like the upstream script at every point the kit relies on (checked against k3s-io/k3s install.sh,
# see lab/README.md), systemd path only:
#   command: INSTALL_K3S_EXEC and script arguments ("server|agent [flags]"; only flags: agent when K3S_URL is
#     set, which then needs K3S_TOKEN or K3S_TOKEN_FILE, else server); unit k3s (server) or k3s-<cmd>;
#     INSTALL_K3S_NAME, INSTALL_K3S_TYPE (default notify, servers and agents), INSTALL_K3S_BIN_DIR,
#     INSTALL_K3S_SYSTEMD_DIR
#   INSTALL_K3S_SKIP_DOWNLOAD=true|binary|selinux, INSTALL_K3S_VERSION, GITHUB_URL (sha256sum-<arch>.txt check;
#     no release channel lookup in the lab), INSTALL_K3S_SYMLINK=skip|force, INSTALL_K3S_SKIP_SELINUX_RPM
#   INSTALL_K3S_SKIP_ENABLE (no enable, no start), INSTALL_K3S_SKIP_START, INSTALL_K3S_FORCE_RESTART
#   the unit file and its env file (0600: the caller's K3S_*, CONTAINERD_* and NO/HTTP/HTTPS_PROXY variables)
#   are removed and written again; `systemctl enable <unit file path>`, `systemctl daemon-reload`; a blocking
#   `systemctl restart` only when the sha256 of binary, unit file or env file changed since the script started.
#   SELinux as upstream where the lab has it (lab hosts made enforcing, lab/standins/selinux.py): without
#   INSTALL_K3S_SKIP_DOWNLOAD=true|selinux and with /usr/share/selinux, `chcon -u system_u -r object_r -t
#   container_runtime_exec_t` of the binary; `restorecon -R -i` of the unit and env file after writing them (errors
#   ignored); the uninstall script ends by removing the k3s-selinux package (`yum remove -y k3s-selinux` where yum
#   exists, else rpm-ostree or zypper).
# Not emulated: openrc, SELinux RPM installation (lab hosts have /usr/share/selinux only with the policy already
# installed), iptables rule cleanup, ExecStartPre modprobe (the lab's systemctl skips ExecStartPre).
set -e
set -o noglob

GITHUB_URL=${GITHUB_URL:-https://github.com/k3s-io/k3s/releases}

info() { echo '[INFO] ' "$@"; }
warn() { echo '[WARN] ' "$@" >&2; }
fatal() { echo '[ERROR] ' "$@" >&2; exit 1; }

if [ -x /sbin/openrc-run ]; then
    fatal 'openrc is not emulated by the lab stand-in'
elif ! { [ -x /bin/systemctl ] || command -v systemctl >/dev/null 2>&1; }; then
    fatal 'Can not find systemd or openrc to use as a process supervisor for k3s'
fi

# --- which command, unit and files ------------------------------------------------------------
set -- ${INSTALL_K3S_EXEC} "$@"
case "${1:-}" in
    -*|"")
        if [ -z "${K3S_URL:-}" ]; then
            CMD_K3S=server
        elif [ -z "${K3S_TOKEN:-}" ] && [ -z "${K3S_TOKEN_FILE:-}" ]; then
            fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
        else
            CMD_K3S=agent
        fi ;;
    *) CMD_K3S=$1; shift ;;
esac
case "${K3S_URL:-}" in
    ""|https://*) ;;
    *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;;
esac
if [ -n "${INSTALL_K3S_NAME:-}" ]; then SYSTEM_NAME=k3s-${INSTALL_K3S_NAME}
elif [ "${CMD_K3S}" = server ]; then SYSTEM_NAME=k3s
else SYSTEM_NAME=k3s-${CMD_K3S}; fi
SYSTEMD_TYPE=${INSTALL_K3S_TYPE:-notify}
BIN_DIR=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
FILE_K3S_SERVICE=${SYSTEMD_DIR}/${SYSTEM_NAME}.service
FILE_K3S_ENV=${FILE_K3S_SERVICE}.env
UNINSTALL_K3S_SH=${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh
KILLALL_K3S_SH=${BIN_DIR}/k3s-killall.sh

installed_hashes() { sha256sum "${BIN_DIR}/k3s" "${FILE_K3S_SERVICE}" "${FILE_K3S_ENV}" 2>&1 || true; }
PRE_INSTALL_HASHES=$(installed_hashes)

# --- the binary -------------------------------------------------------------------------------
release_arch() {
    case $(uname -m) in
        amd64|x86_64) ARCH=amd64; SUFFIX= ;;
        arm64|aarch64) ARCH=arm64; SUFFIX=-arm64 ;;
        arm*) ARCH=arm; SUFFIX=-armhf ;;
        *) fatal "Unsupported architecture $(uname -m)" ;;
    esac
}

download_and_verify() {
    case "${INSTALL_K3S_SKIP_DOWNLOAD:-}" in
        true|binary)
            info 'Skipping k3s download and verify'
            [ -x "${BIN_DIR}/k3s" ] || fatal "Executable k3s binary not found at ${BIN_DIR}/k3s"
            return ;;
    esac
    release_arch
    [ -n "${INSTALL_K3S_VERSION:-}" ] || fatal 'the lab stand-in needs INSTALL_K3S_VERSION (no release channel)'
    info "Using ${INSTALL_K3S_VERSION} as release"
    TMP_DIR=$(mktemp -d -t k3s-install.XXXXXXXXXX)
    trap 'rm -rf "${TMP_DIR}"' EXIT
    info "Downloading hash ${GITHUB_URL}/download/${INSTALL_K3S_VERSION}/sha256sum-${ARCH}.txt"
    curl -o "${TMP_DIR}/k3s.hash" -sfL "${GITHUB_URL}/download/${INSTALL_K3S_VERSION}/sha256sum-${ARCH}.txt" \
        || fatal 'Download failed'
    expected=$(awk -v name="k3s${SUFFIX}" '$2 == name {print $1}' "${TMP_DIR}/k3s.hash")
    if [ -x "${BIN_DIR}/k3s" ] && [ "$(sha256sum "${BIN_DIR}/k3s" | awk '{print $1}')" = "${expected}" ]; then
        info 'Skipping binary downloaded, installed k3s matches hash'
        return
    fi
    info "Downloading binary ${GITHUB_URL}/download/${INSTALL_K3S_VERSION}/k3s${SUFFIX}"
    curl -o "${TMP_DIR}/k3s.bin" -sfL "${GITHUB_URL}/download/${INSTALL_K3S_VERSION}/k3s${SUFFIX}" \
        || fatal 'Download failed'
    info 'Verifying binary download'
    actual=$(sha256sum "${TMP_DIR}/k3s.bin" | awk '{print $1}')
    [ "${expected}" = "${actual}" ] || fatal "Download sha256 does not match ${expected}, got ${actual}"
    chmod 755 "${TMP_DIR}/k3s.bin"
    info "Installing k3s to ${BIN_DIR}/k3s"
    mv -f "${TMP_DIR}/k3s.bin" "${BIN_DIR}/k3s"
}

# SELinux policy setup is skipped with INSTALL_K3S_SKIP_DOWNLOAD=true|selinux, INSTALL_K3S_SKIP_SELINUX_RPM=true
# or without /usr/share/selinux (upstream then also skips the policy check)
setup_selinux() {
    if [ "${INSTALL_K3S_SKIP_SELINUX_RPM:-}" = true ] || [ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" = true ] || \
       [ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" = selinux ] || [ ! -d /usr/share/selinux ]; then
        info 'Skipping installation of SELinux RPM'
        return
    fi
    [ -f /usr/share/selinux/packages/k3s.pp ] || fatal 'the lab stand-in does not emulate the k3s-selinux RPM installation'
    chcon -u system_u -r object_r -t container_runtime_exec_t "${BIN_DIR}/k3s" >/dev/null 2>&1 || \
        fatal "Failed to apply container_runtime_exec_t to ${BIN_DIR}/k3s"
}

create_symlinks() {
    [ "${INSTALL_K3S_SYMLINK:-}" = skip ] && return
    for cmd in kubectl crictl ctr; do
        if [ -e "${BIN_DIR}/${cmd}" ] && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
            info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, already exists"
            continue
        fi
        found=$(command -v "${cmd}" 2>/dev/null || true)
        if [ -n "${found}" ] && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
            info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, command exists in PATH at ${found}"
        else
            info "Creating ${BIN_DIR}/${cmd} symlink to k3s"
            ln -sf k3s "${BIN_DIR}/${cmd}"
        fi
    done
}

create_killall() {
    info "Creating killall script ${KILLALL_K3S_SH}"
    cat > "${KILLALL_K3S_SH}" <<'KILLALL'
#!/bin/sh
# lab stand-in for k3s-killall.sh: stops every k3s unit (no containers, CNI or mounts to clean in the lab)
set -x
for service in /etc/systemd/system/k3s*.service; do
    [ -s "$service" ] && systemctl stop "$(basename "$service")"
done
exit 0
KILLALL
    chmod 755 "${KILLALL_K3S_SH}"
}

create_uninstall() {
    info "Creating uninstall script ${UNINSTALL_K3S_SH}"
    cat > "${UNINSTALL_K3S_SH}" <<UNINSTALL
#!/bin/sh
# lab stand-in for ${SYSTEM_NAME}-uninstall.sh; like upstream it keeps /etc/rancher/node (the node password)
set -x
K3S_DATA_DIR=\${K3S_DATA_DIR:-/var/lib/rancher/k3s}
${KILLALL_K3S_SH}
systemctl disable ${SYSTEM_NAME}
systemctl reset-failed ${SYSTEM_NAME}
systemctl daemon-reload
rm -f ${FILE_K3S_SERVICE} ${FILE_K3S_ENV}
trap 'rm -f ${UNINSTALL_K3S_SH}' EXIT
if (ls ${SYSTEMD_DIR}/k3s*.service) >/dev/null 2>&1; then
    set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
    exit
fi
for cmd in kubectl crictl ctr; do
    [ -L ${BIN_DIR}/\$cmd ] && rm -f ${BIN_DIR}/\$cmd
done
rm -rf /etc/rancher/k3s "\${K3S_DATA_DIR}" /var/lib/kubelet
rm -f ${BIN_DIR}/k3s ${KILLALL_K3S_SH}

if type yum >/dev/null 2>&1; then
    yum remove -y k3s-selinux
    rm -f /etc/yum.repos.d/rancher-k3s-common*.repo
elif type rpm-ostree >/dev/null 2>&1; then
    rpm-ostree uninstall k3s-selinux
    rm -f /etc/yum.repos.d/rancher-k3s-common*.repo
elif type zypper >/dev/null 2>&1; then
    zypper remove -y k3s-selinux
    rm -f /etc/zypp/repos.d/rancher-k3s-common*.repo
fi
UNINSTALL
    chmod 755 "${UNINSTALL_K3S_SH}"
}

systemd_disable() {
    systemctl disable "${SYSTEM_NAME}" >/dev/null 2>&1 || true
    rm -f "/etc/systemd/system/${SYSTEM_NAME}.service" "/etc/systemd/system/${SYSTEM_NAME}.service.env"
}

create_env_file() {
    info "env: Creating environment file ${FILE_K3S_ENV}"
    touch "${FILE_K3S_ENV}"
    chmod 0600 "${FILE_K3S_ENV}"
    exported=$(export -p | sed -n 's/^export //p')
    { printf '%s\n' "${exported}" | grep -E '^(K3S|CONTAINERD)_' || true
      printf '%s\n' "${exported}" | grep -Ei '^(NO|HTTP|HTTPS)_PROXY' || true; } > "${FILE_K3S_ENV}"
}

create_service_file() {
    info "systemd: Creating service file ${FILE_K3S_SERVICE}"
    {
        printf '%s\n' '[Unit]' 'Description=Lightweight Kubernetes' 'Documentation=https://k3s.io' \
            'Wants=network-online.target' 'After=network-online.target' '' '[Install]' \
            'WantedBy=multi-user.target' '' '[Service]' "Type=${SYSTEMD_TYPE}" \
            'EnvironmentFile=-/etc/default/%N' 'EnvironmentFile=-/etc/sysconfig/%N' \
            "EnvironmentFile=-${FILE_K3S_ENV}" 'KillMode=process' 'Delegate=yes' 'User=root' \
            'LimitNOFILE=1048576' 'LimitNPROC=infinity' 'LimitCORE=infinity' 'TasksMax=infinity' \
            'TimeoutStartSec=0' 'Restart=always' 'RestartSec=5s' \
            'ExecStartPre=-/sbin/modprobe br_netfilter' 'ExecStartPre=-/sbin/modprobe overlay'
        # upstream's layout: every line of the command ends with " \", then an empty line
        printf 'ExecStart=%s/k3s \\\n    %s \\\n' "${BIN_DIR}" "${CMD_K3S}"
        for arg in "$@"; do printf '\t'\''%s'\'' \\\n' "$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")"; done
        printf '\n'
    } > "${FILE_K3S_SERVICE}"
    restorecon -R -i "${FILE_K3S_SERVICE}" 2>/dev/null || true
    restorecon -R -i "${FILE_K3S_ENV}" 2>/dev/null || true
}

service_enable_and_start() {
    if ! grep -qs memory /sys/fs/cgroup/cgroup.controllers && \
       [ "$(awk '$1 == "memory" {print $4}' /proc/cgroups 2>/dev/null)" != 1 ]; then
        info 'Failed to find memory cgroup, you may need to add "cgroup_memory=1 cgroup_enable=memory" to your linux cmdline (/boot/cmdline.txt on a Raspberry Pi)'
    fi
    [ "${INSTALL_K3S_SKIP_ENABLE:-}" = true ] && return
    info "systemd: Enabling ${SYSTEM_NAME} unit"
    systemctl enable "${FILE_K3S_SERVICE}" >/dev/null
    systemctl daemon-reload >/dev/null
    [ "${INSTALL_K3S_SKIP_START:-}" = true ] && return
    if [ "${PRE_INSTALL_HASHES}" = "$(installed_hashes)" ] && [ "${INSTALL_K3S_FORCE_RESTART:-}" != true ]; then
        info 'No change detected so skipping service start'
        return
    fi
    info "systemd: Starting ${SYSTEM_NAME}"
    systemctl restart "${SYSTEM_NAME}"
}

download_and_verify
setup_selinux
create_symlinks
create_killall
create_uninstall
systemd_disable
create_env_file
create_service_file "$@"
service_enable_and_start
