#!/bin/bash
# Builds the tapir/debian12 box for vagrant-libvirt from Debian packages alone (no box
# catalogue): mmdebstrap makes the root file system from the Debian mirror, which is then
# laid on a raw disk (one MBR partition, ext4, extlinux) and converted to the qcow2 image
# a libvirt box carries. About a minute on two cores.
#
#   vagrant/build-box.sh [OUTPUT.box]      (default /var/cache/tapir-vagrant/tapir-debian12.box)
#
# Needs root and: mmdebstrap fdisk extlinux syslinux-common qemu-utils vagrant (for the
# insecure public key). scripts/vagrant-check.sh installs them and runs this when the box
# is not cached.
#
# Why it is built this way (measured on a host like CI's, see the notes in vagrant/README.md):
#  - MBR + extlinux, and the partition mounted through a loop device at its offset: a host
#    kernel without MSDOS partition support makes no /dev/loopXp1, and GRUB would need one.
#    mkfs.ext4 -O ^64bit keeps syslinux 6.04 able to read the file system.
#  - An empty /etc/machine-id: every VM then makes its own, and so its own DHCP DUID (a
#    shared one gives every VM the same lease on the management network).
#  - Only an ed25519 host key, made at first boot: RSA key generation takes 47 s under TCG.
#  - No resolver: the testbed's networks are isolated; nothing in a VM resolves names.
#  - What Tapir needs in the guest besides the checkout: iproute2, ping, curl, rsync,
#    openssl (the lab API server makes its serving certificate with it), kmod.
set -euo pipefail

OUT=${1:-/var/cache/tapir-vagrant/tapir-debian12.box}
MIRROR=${TAPIR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${TAPIR_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

[ "$(id -u)" = 0 ] || { echo "build-box.sh: run as root (mmdebstrap, loop devices, mount)" >&2; exit 1; }
for tool in mmdebstrap sfdisk extlinux qemu-img losetup mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "build-box.sh: $tool is missing (apt-get install mmdebstrap fdisk extlinux syslinux-common qemu-utils)" >&2; exit 1; }
done
PUBKEY=
for f in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub; do [ -f "$f" ] && PUBKEY=$f; done
[ -n "$PUBKEY" ] || { echo "build-box.sh: vagrant's insecure public key not found (apt-get install vagrant)" >&2; exit 1; }
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || { echo "build-box.sh: /usr/lib/syslinux/mbr/mbr.bin is missing (apt-get install syslinux-common)" >&2; exit 1; }

W=$(mktemp -d /tmp/tapirvg-box.XXXXXX)
MNT=$W/mnt
LOOP=
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || true; fi
  if [ -n "$LOOP" ]; then losetup -d "$LOOP" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$MNT" "$(dirname "$OUT")"
cp "$PUBKEY" "$W/vagrant.pub"

# 1. The root file system. The hooks' "$1" is mmdebstrap's: the root being built.
# shellcheck disable=SC2016
mmdebstrap --variant=apt --aptopt='APT::Install-Recommends "false"' \
  --include=systemd-sysv,dbus,linux-image-cloud-amd64,initramfs-tools,openssh-server,sudo,iproute2,iputils-ping,procps,less,rsync,netbase,ca-certificates,curl,openssl,kmod \
  --customize-hook='echo debian12 > "$1/etc/hostname"' \
  --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 debian12\n::1 localhost ip6-localhost ip6-loopback\n" > "$1/etc/hosts"' \
  --customize-hook='printf "LABEL=tapir-root / ext4 errors=remount-ro 0 1\n" > "$1/etc/fstab"' \
  --customize-hook='chroot "$1" useradd -m -s /bin/bash -G sudo vagrant' \
  --customize-hook='echo vagrant:vagrant | chroot "$1" chpasswd; echo root:vagrant | chroot "$1" chpasswd' \
  --customize-hook='printf "vagrant ALL=(ALL) NOPASSWD:ALL\n" > "$1/etc/sudoers.d/vagrant"; chmod 0440 "$1/etc/sudoers.d/vagrant"' \
  --customize-hook="install -d -m 700 -o 1000 -g 1000 \"\$1/home/vagrant/.ssh\"; install -m 600 -o 1000 -g 1000 $W/vagrant.pub \"\$1/home/vagrant/.ssh/authorized_keys\"" \
  --customize-hook='printf "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n" > "$1/etc/systemd/network/99-dhcp.network"; chroot "$1" systemctl enable systemd-networkd' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*; printf "HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\n" > "$1/etc/ssh/sshd_config.d/vagrant.conf"' \
  --customize-hook='printf "[Unit]\nDescription=Generate SSH host key\nBefore=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key\n[Install]\nWantedBy=multi-user.target\n" > "$1/etc/systemd/system/ssh-hostkey.service"; chroot "$1" systemctl enable ssh-hostkey.service' \
  --customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"; echo "# no DNS on the isolated testbed" > "$1/etc/resolv.conf"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  bookworm "$W/rootfs.tar" \
  "deb $MIRROR bookworm main" \
  "deb $MIRROR bookworm-updates main" \
  "deb $SECURITY bookworm-security main"

# 2. An 8 GiB sparse disk: MBR, one bootable ext4 partition at 1 MiB, extlinux. The
#    partition is mounted through a loop device at its offset; extlinux's boot record
#    reads the partition's offset from the MBR at boot.
RAW=$W/debian12.raw
truncate -s 8G "$RAW"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$RAW"
LOOP=$(losetup --show -f -o $((2048 * 512)) "$RAW")
mkfs.ext4 -q -L tapir-root -O ^64bit "$LOOP"
mount "$LOOP" "$MNT"
tar -xpf "$W/rootfs.tar" -C "$MNT" --numeric-owner --xattrs --xattrs-include='*'
rm -f "$W/rootfs.tar"
mkdir -p "$MNT/boot/extlinux"
printf 'SERIAL 0 115200\nDEFAULT debian\nPROMPT 0\nTIMEOUT 0\nLABEL debian\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND root=LABEL=tapir-root ro console=tty0 console=ttyS0,115200n8 net.ifnames=0\n' >"$MNT/boot/extlinux/extlinux.conf"
extlinux --install "$MNT/boot/extlinux" 2>/dev/null
umount "$MNT"
losetup -d "$LOOP"
LOOP=
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$RAW" bs=440 count=1 conv=notrunc status=none

# 3. The vagrant-libvirt box: metadata, a default Vagrantfile, the qcow2 image.
mkdir -p "$W/box"
qemu-img convert -O qcow2 "$RAW" "$W/box/box.img"
rm -f "$RAW"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":8}\n' >"$W/box/metadata.json"
printf 'Vagrant.configure("2") do |config|\n  config.vm.provider :libvirt do |lv|\n    lv.disk_bus = "virtio"\n  end\nend\n' >"$W/box/Vagrantfile"
tar -C "$W/box" -cf "$OUT.tmp" metadata.json Vagrantfile box.img
mv -f "$OUT.tmp" "$OUT"
echo "build-box.sh: $OUT ($(du -h "$OUT" | cut -f1))"
