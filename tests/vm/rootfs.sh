#!/usr/bin/env bash
# Builds the guest disk every VM test boots: Debian bookworm with systemd, Debian's 6.1 kernel
# (bookworm) and 6.12 kernel (bookworm-backports) with their initramfs, and what the integration
# tests run at runtime (cc for the fixtures, setpriv, logrotate). Everything comes from Debian's
# mirror. Output, cached under target/vm until this script or tests/vm/boot changes:
#   rootfs.ext4, and vmlinuz-VERSION / initrd.img-VERSION for each kernel.
# The guest never writes the image: QEMU runs with -snapshot.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=target/vm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
stamp=$(cat tests/vm/rootfs.sh tests/vm/boot | sha256sum | cut -c1-16)
if [ -f "$work/rootfs.ext4" ] && [ "$(cat "$work/rootfs.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi
mkdir -p "$work/debs"
dir=$work/rootfs
rm -rf "$dir" "$work/rootfs.ext4" "$work"/vmlinuz-* "$work"/initrd.img-*
echo "building the guest root filesystem (Debian bookworm, kernels 6.1 and 6.12) in $dir"

# The initramfs needs only the disk and its file system; MODULES=list keeps it small (quick
# to unpack under TCG) and independent of the build host's hardware.
initramfs_conf='mkdir -p "$1/etc/initramfs-tools/conf.d"
	echo MODULES=list > "$1/etc/initramfs-tools/conf.d/ebpfh-vm.conf"
	printf "virtio_pci\nvirtio_blk\next4\n" >> "$1/etc/initramfs-tools/modules"'
# Downloads are kept in target/vm/debs so a rebuild fetches only what changed.
mmdebstrap --mode=root --variant=apt --skip=download/empty \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--include=systemd-sysv,udev,kmod,initramfs-tools,linux-image-amd64,gcc,libc6-dev,libelf1,zlib1g,util-linux,procps,logrotate \
	--setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
	--setup-hook="sync-in $work/debs /var/cache/apt/archives" \
	--essential-hook="$initramfs_conf" \
	--customize-hook='chroot "$1" apt-get install -y -qq -t bookworm-backports linux-image-amd64' \
	--customize-hook="sync-out /var/cache/apt/archives $work/debs" \
	--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
	--customize-hook='echo ebpfh-vm > "$1/etc/hostname"' \
	--customize-hook='echo "/dev/vda / ext4 rw 0 1" > "$1/etc/fstab"' \
	--customize-hook='chroot "$1" systemctl mask logrotate.timer apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer' \
	--customize-hook="copy-in tests/vm/boot /usr/local/sbin" \
	bookworm "$dir" \
	"deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
	"deb $mirror bookworm-backports main" "deb ${mirror%/debian}/debian-security bookworm-security main"

for k in "$dir"/boot/vmlinuz-*; do
	v=${k##*/vmlinuz-}
	cp "$k" "$work/vmlinuz-$v"
	cp "$dir/boot/initrd.img-$v" "$work/initrd.img-$v"
done
# Room for the tests' temporary files beside the installed system.
size=$(($(du -sm "$dir" | cut -f1) + 512))
mkfs.ext4 -q -L ebpfh-vm -d "$dir" "$work/rootfs.ext4" "${size}M"
rm -rf "$dir"
echo "$stamp" > "$work/rootfs.stamp"
ls "$work"/vmlinuz-*
