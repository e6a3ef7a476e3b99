# nooelint: oelint.var.suggestedvar.BUGTRACKER,oelint.var.suggestedvar.CVE_PRODUCT - an example image, not software with its own bugs or CVEs
SUMMARY = "Example gateway image: a minimal bootable image plus the SCS agent"
DESCRIPTION = "Shows how to add scs-agent to an image. Products add scs-agent to their own image \
               with IMAGE_INSTALL:append (see README.md)."
SECTION = "images"
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot scs-agent ca-certificates ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_LINGUAS = ""

inherit core-image
