# nooelint: oelint.var.bbclassextend - a gateway daemon; native/nativesdk variants have no use
SUMMARY = "SCS Gateway agent: telemetry, commands and artifact uploads over MQTT"
DESCRIPTION = "Edge agent for smart-city gateways. Reports gateway, camera and NVR metrics over MQTT \
               with a durable SQLite offline queue, runs LwM2M-style commands and uploads artifacts over HTTPS."
# nooelint: oelint.vars.homepageping - placeholder host until the project has a public URL; CI is offline
HOMEPAGE = "https://example.invalid/scs-gateway"
BUGTRACKER = "https://example.invalid/scs-gateway/issues"
SECTION = "net"
LICENSE = "(0BSD | Apache-2.0 | MIT) & Apache-2.0 & (Apache-2.0 & ISC) & (Apache-2.0 | Apache-2.0 WITH LLVM-exception | MIT) & (Apache-2.0 | BSD-2-Clause | MIT) & (Apache-2.0 | ISC | MIT) & (Apache-2.0 | MIT) & (Apache-2.0 | MIT | Zlib) & BSD-3-Clause & BlueOak-1.0.0 & ISC & MIT & (MIT | Unlicense) & Zlib & PD"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

CVE_PRODUCT = "scs-agent"

PV = "0.1.0+git"
SRC_URI = "git://example.invalid/scs-gateway.git;protocol=https;branch=main"
# Bump together with scs-agent-crates.inc (scripts/gen-yocto-crates) so the crates match this Cargo.lock.
SRCREV = "290821086990bff821c187c73aa22648b58f0462"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd update-rc.d useradd

# The workspace also holds the cloud shim; the gateway needs only the agent.
CARGO_BUILD_FLAGS:append = " --package scs-agent --bin scs-agent"

# The workspace release profile strips symbols (strip = "symbols") for the prebuilt tarballs. Yocto strips
# itself and splits debug info into ${PN}-dbg; an already-stripped binary would trip the already-stripped QA
# check. Cargo reads profile overrides from the environment, so this must be exported.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# The repo's .cargo/config.toml trims the bundled SQLite through [env] LIBSQLITE3_FLAGS, but cargo reads
# config files from its working directory upwards, and the cargo class runs it in ${B} (${WORKDIR}/build),
# outside ${S}: export the same flags here. scripts/ci-packaging fails if the two values differ.
export LIBSQLITE3_FLAGS = "-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_SOUNDEX -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_DEFAULT_MEMSTATUS=0 -USQLITE_ENABLE_STAT4"

# ARMv7 gateways run the agent as Thumb-2 code, about 15% smaller than ARM code; its 3.0 MB armv7 budget
# assumes it, as .cargo/config.toml (not read here) does for the other builds. OE's generated Rust target
# carries +thumb-mode only for a tune with `thumb` and ARM_INSTRUCTION_SET = "thumb"
# (rust-target-config.bbclass); the cargo class exports RUSTFLAGS, so add it for every ARMv7 tune.
# target_is_armv7() is rust-common.bbclass's own test (false for -native).
RUSTFLAGS:append = " ${@'-C target-feature=+thumb-mode' if target_is_armv7(d) else ''}"

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --home-dir ${localstatedir}/lib/scs-agent --no-create-home --shell ${base_sbindir}/nologin scs"

SYSTEMD_SERVICE:${PN} = "scs-agent.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# Images with SysV init: /etc/init.d/scs-agent runs the agent under scs-agent-supervise, which restarts it
# (systemd images get Restart=always from the unit instead).
INITSCRIPT_NAME = "scs-agent"
INITSCRIPT_PARAMS = "defaults 99"

do_install:append() {
    # Unit and config come from the same checkout as the binary, so they always match its version.
    install -d ${D}${systemd_system_unitdir}
    sed -e 's,/usr/bin/,${bindir}/,g' \
        -e 's,/usr/sbin/,${sbindir}/,g' \
        -e 's,/etc/scs/,${sysconfdir}/scs/,g' \
        -e 's,/var/lib/,${localstatedir}/lib/,g' \
        ${S}/packaging/scs-agent.service > ${D}${systemd_system_unitdir}/scs-agent.service
    chmod 0644 ${D}${systemd_system_unitdir}/scs-agent.service

    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -d ${D}${INIT_D_DIR}
        sed -e 's,/usr/bin/,${bindir}/,g' \
            -e 's,/usr/sbin/,${sbindir}/,g' \
            -e 's,/etc/scs/,${sysconfdir}/scs/,g' \
            -e 's,/etc/default/,${sysconfdir}/default/,g' \
            -e 's,/var/lib/,${localstatedir}/lib/,g' \
            ${S}/packaging/S99scs-agent > ${D}${INIT_D_DIR}/scs-agent
        chmod 0755 ${D}${INIT_D_DIR}/scs-agent
        install -d ${D}${sbindir}
        install -m 0755 ${S}/packaging/scs-agent-supervise ${D}${sbindir}/scs-agent-supervise
    fi

    # Both the unit and the init script start the agent through the launcher, which picks an updated
    # binary under the data dir (agent.update) or falls back to ${bindir}/scs-agent.
    install -d ${D}${sbindir}
    sed -e 's,/usr/bin/,${bindir}/,g' -e 's,/var/lib/,${localstatedir}/lib/,g' \
        ${S}/packaging/scs-agent-launch > ${D}${sbindir}/scs-agent-launch
    chmod 0755 ${D}${sbindir}/scs-agent-launch

    # Public release key that agent.update checks signatures with (32 raw bytes, base64).
    if [ -n "${SCS_RELEASE_KEY_PUB}" ]; then
        install -m 0644 ${SCS_RELEASE_KEY_PUB} ${D}${sysconfdir}/scs/release-key.pub
    fi

    # Config is readable by the agent, writable only by root (scripts/provision runs as root).
    install -d -m 0750 -g scs ${D}${sysconfdir}/scs
    install -m 0640 -g scs ${S}/packaging/agent.toml ${D}${sysconfdir}/scs/agent.toml

    # First-boot enrollment: a site token (`scs-cloud-shim enroll-tokens add --out FILE`) with which every
    # gateway flashed with this image enrolls itself; readable by the agent only.
    if [ -n "${SCS_ENROLL_TOKEN_FILE}" ]; then
        install -m 0640 -g scs ${SCS_ENROLL_TOKEN_FILE} ${D}${sysconfdir}/scs/enroll.toml
    fi
    install -m 0644 ${S}/agent/agent.example.toml ${D}${sysconfdir}/scs/agent.toml.example

    # Data dir: queue db, spool, logs. Put it on the persistent partition for A/B updates (README.md).
    install -d -m 0750 -o scs -g scs ${D}${localstatedir}/lib/scs-agent

    # Lets user scs run `systemctl reboot` (the "reboot gateway" command); effective only with polkit.
    install -d ${D}${datadir}/polkit-1/rules.d
    install -m 0644 ${S}/packaging/polkit/50-scs-agent.rules ${D}${datadir}/polkit-1/rules.d/
}

# Path (on the build host) of the release public key file; empty = no key, agent.update refuses.
SCS_RELEASE_KEY_PUB ??= ""
# Path (on the build host) of an enrollment file installed as /etc/scs/enroll.toml; empty = none (gateways
# then get a bundle with scripts/provision --bundle). Its token must allow as many uses as gateways flashed.
SCS_ENROLL_TOKEN_FILE ??= ""
# A new token means a new image: rebuild when the file's content changes.
do_install[file-checksums] += "${@'${SCS_ENROLL_TOKEN_FILE}:True' if d.getVar('SCS_ENROLL_TOKEN_FILE') else ''}"
# Image updates (image.install): pull in the update tool; set [update] image_tool in agent.toml to match.
PACKAGECONFIG ??= ""
PACKAGECONFIG[rauc] = ",,,rauc"
PACKAGECONFIG[swupdate] = ",,,swupdate u-boot-fw-utils"

PACKAGE_BEFORE_PN = "${PN}-polkit"
FILES:${PN}-polkit += "${datadir}/polkit-1/rules.d/50-scs-agent.rules"
FILES:${PN} += "${localstatedir}/lib/scs-agent"
RRECOMMENDS:${PN} = "${PN}-polkit"

# A package upgrade must never replace a provisioned config.
CONFFILES:${PN} = "${sysconfdir}/scs/agent.toml"
