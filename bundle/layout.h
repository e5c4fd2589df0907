/* SPDX-License-Identifier: Apache-2.0 */
/* What an offline bundle holds and how it names its images: an OCI image layout (oci-layout,
 * index.json, blobs/sha256/<hex>) in one tar file. Each index.json entry is one image as a
 * client names it through the mirror, with these annotations:
 *
 *   org.opencontainers.image.ref.name  the full name, e.g. docker.io/library/alpine:3.19
 *                                      (skopeo's oci-archive:FILE:NAME)
 *   io.containerd.image.name           the same (ctr import)
 *   io.regcache.kind                   "upstream" (a cached image) or "hosted"
 *   io.regcache.upstream               the upstream's configured name (kind upstream)
 *   io.regcache.repository             the repository: as the upstream names it (library/alpine),
 *                                      or the hosted repository
 *   io.regcache.tag                    the tag (absent for an image named by digest)
 *   io.regcache.media-type             the top manifest's own media type (the entry's mediaType
 *                                      is its OCI equivalent: containers/image reads no other)
 *   io.regcache.platforms              present when only some platforms of an index were
 *                                      exported: "linux/amd64,linux/arm64/v8"
 *   io.regcache.validated              when the exporting mirror had validated the tag with
 *                                      its upstream (ms since the epoch); absent when it served
 *                                      the tag stale
 *
 * Pure: no I/O. */
#ifndef REGCACHE_BUNDLE_LAYOUT_H
#define REGCACHE_BUNDLE_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "util/reference.h"

#define BUNDLE_ANN_REF_NAME "org.opencontainers.image.ref.name"
#define BUNDLE_ANN_CONTAINERD_NAME "io.containerd.image.name"
#define BUNDLE_ANN_KIND "io.regcache.kind"
#define BUNDLE_ANN_UPSTREAM "io.regcache.upstream"
#define BUNDLE_ANN_REPOSITORY "io.regcache.repository"
#define BUNDLE_ANN_TAG "io.regcache.tag"
#define BUNDLE_ANN_MEDIA_TYPE "io.regcache.media-type"
#define BUNDLE_ANN_PLATFORMS "io.regcache.platforms"
#define BUNDLE_ANN_VALIDATED "io.regcache.validated"

#define BUNDLE_MEDIA_MAX 256
#define BUNDLE_DIGEST_MAX 80 /* "sha256:" + 64 hex, with room */
#define BUNDLE_PLATFORMS_MAX 16
#define BUNDLE_INDEX_JSON_MAX (16 * 1024 * 1024)

#define MEDIA_BUNDLE_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_BUNDLE_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"

struct bundle_platform {
    char os[64], arch[64], variant[64]; /* variant "" when none */
};

/* One descriptor of an index or a manifest. */
struct bundle_desc {
    char media_type[BUNDLE_MEDIA_MAX];
    char digest[BUNDLE_DIGEST_MAX];
    uint64_t size;
    int has_platform;
    struct bundle_platform platform;
    /* a Docker attestation manifest (vnd.docker.reference.type), and what it attests */
    int attestation;
    char attests[BUNDLE_DIGEST_MAX];
    /* a layer the distribution rules keep out of registries (foreign, non-distributable) */
    int foreign;
};

/* The canonical manifest media type media_type names (parameters and case ignored), or NULL
 * when it is none of the four (OCI and Docker image manifests and indexes). */
const char *bundle_manifest_type(const char *media_type);
int bundle_type_is_index(const char *media_type);
/* The OCI type of the same kind (Docker's list -> OCI index, Docker's manifest -> OCI
 * manifest). */
const char *bundle_oci_type(const char *media_type);

/* Reads one descriptor object; 0, or -EINVAL with why in err (no sha256 digest, no size). */
int bundle_desc_parse(const char *elem, size_t len, struct bundle_desc *d, char *err,
                      size_t errlen);

/* Parses a manifest or an index: *is_index, its canonical media type (from its mediaType, else
 * fallback_type, else its shape) and its children: an index's manifests, an image manifest's
 * config and layers. *out is malloc'ed (NULL when there are none). 0, or -EINVAL with why in
 * err, -ENOMEM. */
int bundle_doc_children(const char *doc, size_t len, const char *fallback_type, int *is_index,
                        const char **media_type, struct bundle_desc **out, size_t *n, char *err,
                        size_t errlen);

/* "os/arch[/variant]"; 0 or -EINVAL. */
int bundle_platform_parse(const char *s, struct bundle_platform *p);
void bundle_platform_format(const struct bundle_platform *p, char *out, size_t len);
/* Does an index's child descriptor run on one of want[0..n)? A variant left out matches every
 * variant; arm64's "v8" is its default variant. */
int bundle_platform_matches(const struct bundle_platform *want, size_t n,
                            const struct bundle_platform *have);

/* Which children of an index an export with platforms want[0..n) takes (n 0: all): those for
 * a wanted platform, those without a platform, and the attestations of taken ones. keep[i] is
 * set to 1 or 0. */
void bundle_select_children(const struct bundle_desc *d, size_t nd,
                            const struct bundle_platform *want, size_t n, int *keep);

/* How a client names an image through the mirror, resolved as the mirror routes it. */
struct bundle_name {
    int hosted;
    char upstream[256];               /* the upstream's name ("" when hosted) */
    char path_name[REF_NAME_MAX + 1]; /* the name in the mirror's /v2/<name>/ paths */
    char repo[REF_NAME_MAX + 1];      /* the upstream's (library/alpine) or the hosted one */
    char tag[REF_TAG_MAX + 1];        /* "" when named by digest only */
    char digest[REF_DIGEST_MAX + 1];  /* "" when named by tag only */
};

/* Parses REF ("alpine:3.19", "docker.io/library/alpine", "quay.io/org/app:1", "name@sha256:..",
 * a hosted "team/app:1"; the tag defaults to latest) and routes it as the mirror does: a
 * hosted pattern (when no upstream is named), else the upstream its first component names,
 * else the first upstream; Docker Hub's library/ for one-component names. 0, or -EINVAL with
 * why in err. */
int bundle_name_parse(const struct config *cfg, const char *ref, struct bundle_name *out, char *err,
                      size_t errlen);
/* The full name: <upstream>/<repo>[:tag][@digest], or for a hosted image <host>/<repo>...
 * with host the mirror's address. */
void bundle_name_full(const struct bundle_name *n, const char *host, char *out, size_t len);

/* Whether hosted repository repo falls under one of cfg's hosted patterns. */
int bundle_is_hosted(const struct config *cfg, const char *repo);
/* cfg's upstream named name, or NULL. */
const struct config_upstream *bundle_upstream(const struct config *cfg, const char *name);
/* Docker Hub, where one-component names live under library/ (as upstream/ decides it). */
int bundle_upstream_is_docker_hub(const struct config_upstream *u);

#endif
