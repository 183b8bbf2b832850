#!/usr/bin/env bash
# Build the Vagrant (libvirt) box for Skiff's disposable VM from Debian's packages alone:
# debootstrap into a sparse raw disk, grub, a `vagrant` user with Vagrant's insecure key,
# then qcow2 + metadata.json + Vagrantfile tarred into a .box.
#
# Called by vm/build-box (which computes the cache key and decides whether to rebuild); it can
# also be run by hand:  vm/build-box.sh OUT_DIR   (as root). Environment:
#   SKIFF_BOX_SUITE (bookworm)  SKIFF_BOX_MIRROR (http://deb.debian.org/debian)
#   SKIFF_BOX_PACKAGES (file, default provision/packages.txt)  SKIFF_BOX_UUID (root fs UUID)
#   SKIFF_BOX_CMDLINE (kernel cmdline without root=)  SKIFF_BOX_DEB_CACHE (downloaded .debs)
#
# Why each odd step is there (see shared reference, "Vagrant here"):
# - the root filesystem has a FIXED UUID: grub.cfg and fstab name it, the image is the same
#   for every build with the same inputs, and the harness can boot the same disk with another
#   kernel cmdline (direct kernel boot) for the cgroup-v1 machine;
# - grub.cfg is written by hand: update-grub on the host would write root=/dev/loopNp1;
# - only an ed25519 host key, made at first boot (RSA takes ~11 s under TCG, and every VM must
#   have its own keys);
# - apt's daily timers are masked: they take the dpkg lock in the middle of provisioning.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "build-box: run as root" >&2; exit 1; }
OUT=${1:?usage: build-box.sh OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=${SKIFF_BOX_SUITE:-bookworm}
MIRROR=${SKIFF_BOX_MIRROR:-http://deb.debian.org/debian}
PKGFILE=${SKIFF_BOX_PACKAGES:-$HERE/../provision/packages.txt}
UUID=${SKIFF_BOX_UUID:-5c1ff0e0-5c1f-4f00-8000-00000000b0c5}
CMDLINE=${SKIFF_BOX_CMDLINE:-ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0}
DEBCACHE=${SKIFF_BOX_DEB_CACHE:-/var/tmp/skt6-box/debs}
SIZE_GB=16
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

mkdir -p "$OUT" "$DEBCACHE"
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
MNT=$WORK/mnt
LOOP=
cleanup() {
  set +e
  for m in dev/pts dev proc sys run; do mountpoint -q "$MNT/$m" && umount -l "$MNT/$m"; done
  mountpoint -q "$MNT" && umount "$MNT"
  [ -n "$LOOP" ] && losetup -d "$LOOP"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM; trap 'exit 130' INT; trap 'exit 129' HUP   # so that cleanup runs

# a build killed hard (SIGKILL, power loss) may have left mounts and a loop device behind
for old in "$OUT"/.work.*; do
  [ "$old" != "$WORK" ] && [ -d "$old" ] || continue
  mount | awk -v w="$old/" 'index($3, w) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l
  losetup -j "$old/disk.raw" -O NAME -n 2>/dev/null | xargs -r -n1 losetup -d
  rm -rf "$old"
done
step() { printf '[build-box %s] %s\n' "$(date +%T)" "$*"; }

step "disk: ${SIZE_GB} GiB sparse raw, one ext4 partition (UUID $UUID)"
truncate -s ${SIZE_GB}G "$WORK/disk.raw"
parted -s "$WORK/disk.raw" mklabel msdos mkpart primary ext4 1MiB 100% set 1 boot on
LOOP=$(losetup -f --show -P "$WORK/disk.raw")
partx -a "$LOOP" 2>/dev/null || true          # the partition node does not appear by itself
for _ in $(seq 50); do [ -b "${LOOP}p1" ] && break; sleep 0.1; done
mkfs.ext4 -q -F -U "$UUID" -L skiff-root -E root_owner=0:0 "${LOOP}p1"
mkdir -p "$MNT"
mount "${LOOP}p1" "$MNT"

step "debootstrap $SUITE (minbase) from $MIRROR"
base=systemd-sysv,udev,dbus,kmod,initramfs-tools,openssh-server,sudo,python3,ifupdown
base=$base,isc-dhcp-client,iproute2,netbase,procps,e2fsprogs,ca-certificates
debootstrap --variant=minbase --cache-dir="$DEBCACHE" --include="$base" \
  "$SUITE" "$MNT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }

for m in dev dev/pts proc sys run; do mount --bind "/$m" "$MNT/$m"; done
in_root() { chroot "$MNT" "$@"; }

step "kernel, grub and the provision packages ($(grep -cv '^\s*\(#\|$\)' "$PKGFILE") from $PKGFILE)"
mapfile -t extra < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$PKGFILE")
cat >"$MNT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
EOF
echo 'man-db man-db/auto-update boolean false' | in_root debconf-set-selections
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-include /usr/share/doc/*/copyright\n' \
  >"$MNT/etc/dpkg/dpkg.cfg.d/01-skiff-nodoc"
# the service the docker-registry package would start listens on :5000; the playbook runs its own
printf '#!/bin/sh\nexit 101\n' >"$MNT/usr/sbin/policy-rc.d"; chmod +x "$MNT/usr/sbin/policy-rc.d"
mkdir -p "$MNT/var/cache/apt/archives"
cp -n "$DEBCACHE"/*.deb "$MNT/var/cache/apt/archives/" 2>/dev/null || true
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends linux-image-amd64 grub-pc "${extra[@]}" \
  >"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; exit 1; }
cp -n "$MNT"/var/cache/apt/archives/*.deb "$DEBCACHE/" 2>/dev/null || true
in_root apt-get clean
rm -f "$MNT/usr/sbin/policy-rc.d"

step "system configuration"
echo skiff-vm >"$MNT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 skiff-vm\n::1 localhost ip6-localhost ip6-loopback\n' \
  >"$MNT/etc/hosts"
echo "UUID=$UUID / ext4 errors=remount-ro 0 1" >"$MNT/etc/fstab"
cat >"$MNT/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback
auto eth0
iface eth0 inet dhcp
EOF
: >"$MNT/etc/machine-id"                       # a new id per VM, made by systemd at first boot
rm -f "$MNT/var/lib/dbus/machine-id"
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer \
  e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
in_root systemctl disable docker-registry.service >/dev/null 2>&1 || true

# ssh: ed25519 host key generated at first boot, no DNS lookups, vagrant's insecure key
rm -f "$MNT"/etc/ssh/ssh_host_*
cat >"$MNT/etc/ssh/sshd_config.d/skiff.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
PasswordAuthentication no
EOF
cat >"$MNT/etc/systemd/system/skiff-hostkey.service" <<'EOF'
[Unit]
Description=Generate this VM's ssh host key (ed25519 only: RSA is slow under emulation)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
[Install]
WantedBy=multi-user.target
EOF
in_root systemctl enable skiff-hostkey.service >/dev/null 2>&1
in_root useradd -m -s /bin/bash -U vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$MNT/etc/sudoers.d/vagrant"
chmod 0440 "$MNT/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$MNT/home/vagrant/.ssh"
key=$(ls /usr/share/vagrant/keys/vagrant.pub /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
  /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
[ -n "$key" ] || { echo "build-box: vagrant's insecure public key not found (is vagrant installed?)" >&2; exit 1; }
install -m 0600 -o 1000 -g 1000 "$key" "$MNT/home/vagrant/.ssh/authorized_keys"

step "grub (hand-written grub.cfg, root=UUID)"
cat >"$MNT/etc/default/grub" <<EOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="$CMDLINE"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
in_root grub-install --target=i386-pc --modules="part_msdos ext2" "$LOOP" >/dev/null 2>&1
cat >"$MNT/boot/grub/grub.cfg" <<EOF
serial --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=0
search --no-floppy --fs-uuid --set=root $UUID
linux /vmlinuz root=UUID=$UUID $CMDLINE
initrd /initrd.img
boot
EOF
# the kernel and initrd beside the box: the cgroup-v1 machine boots them with another cmdline
kver=$(basename "$(readlink -f "$MNT/vmlinuz")")
cp "$(readlink -f "$MNT/vmlinuz")" "$WORK/vmlinuz"
cp "$(readlink -f "$MNT/initrd.img")" "$WORK/initrd.img"
echo "$kver" >"$WORK/kernel-version"

step "trim and image"
rm -rf "$MNT"/var/lib/apt/lists/*_Packages.lz4 "$MNT"/tmp/* "$MNT"/var/log/*.log
for m in dev/pts dev proc sys run; do umount -l "$MNT/$m"; done
fstrim "$MNT" >/dev/null 2>&1 || true
umount "$MNT"
losetup -d "$LOOP"; LOOP=
qemu-img convert -O qcow2 "$WORK/disk.raw" "$WORK/box.img"
rm -f "$WORK/disk.raw"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$SIZE_GB" >"$WORK/metadata.json"
cat >"$WORK/Vagrantfile" <<'EOF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "qemu"
  end
end
EOF
tar -C "$WORK" -cf "$WORK/skiff.box" metadata.json Vagrantfile box.img
rm -f "$WORK/box.img"
mv "$WORK/skiff.box" "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/kernel-version" "$OUT/"
step "done: $OUT/skiff.box ($(du -h "$OUT/skiff.box" | cut -f1)), kernel $kver"
