//! Media types: the one place that says which manifests, indexes and layers rbuild reads
//! and what each layer type means. OCI names are oci-spec's [`MediaType`] variants; Docker's
//! names (which oci-spec keeps as [`MediaType::Other`]) are the constants below.

pub use oci_spec::image::MediaType;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// An OCI image index or a Docker manifest list.
pub fn is_index(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageIndex) || media_type.as_ref() == DOCKER_MANIFEST_LIST
}

/// An OCI image manifest or a Docker schema 2 manifest.
pub fn is_image_manifest(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageManifest) || media_type.as_ref() == DOCKER_MANIFEST
}

/// How a layer blob is compressed, as its media type says (OCI or Docker name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Uncompressed,
    Zstd,
}

/// The compression a layer media type names; `None` for a type that is not a layer
/// rbuild knows.
pub fn layer_compression(media_type: &MediaType) -> Option<LayerCompression> {
    match media_type {
        MediaType::ImageLayerGzip => Some(LayerCompression::Gzip),
        MediaType::ImageLayer => Some(LayerCompression::Uncompressed),
        MediaType::ImageLayerZstd => Some(LayerCompression::Zstd),
        MediaType::Other(m) => match m.as_str() {
            DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP => Some(LayerCompression::Gzip),
            DOCKER_LAYER_TAR => Some(LayerCompression::Uncompressed),
            DOCKER_LAYER_ZSTD => Some(LayerCompression::Zstd),
            _ => None,
        },
        _ => None,
    }
}

/// A layer rbuild cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedLayer {
    #[error("unknown layer media type {0:?}")]
    Unknown(String),
}

/// The OCI media type a layer is stored under, or why it cannot be used: gzip, zstd and
/// uncompressed tar layers are accepted.
pub fn layer_media_type(media_type: &MediaType) -> Result<MediaType, UnsupportedLayer> {
    match layer_compression(media_type) {
        Some(LayerCompression::Gzip) => Ok(MediaType::ImageLayerGzip),
        Some(LayerCompression::Uncompressed) => Ok(MediaType::ImageLayer),
        Some(LayerCompression::Zstd) => Ok(MediaType::ImageLayerZstd),
        None => Err(UnsupportedLayer::Unknown(media_type.to_string())),
    }
}

/// The media type a layer gets in a manifest rbuild writes: Docker's names mapped to
/// OCI's by [`layer_compression`], a type rbuild does not know kept as it is.
pub fn manifest_layer_media_type(media_type: &MediaType) -> MediaType {
    match layer_compression(media_type) {
        Some(LayerCompression::Gzip) => MediaType::ImageLayerGzip,
        Some(LayerCompression::Uncompressed) => MediaType::ImageLayer,
        Some(LayerCompression::Zstd) => MediaType::ImageLayerZstd,
        None => media_type.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_layer_types_map_to_oci() {
        let m = |s: &str| MediaType::from(s);
        assert_eq!(
            layer_media_type(&m(DOCKER_LAYER_GZIP)),
            Ok(MediaType::ImageLayerGzip)
        );
        assert_eq!(
            layer_media_type(&m(DOCKER_LAYER_FOREIGN_GZIP)),
            Ok(MediaType::ImageLayerGzip)
        );
        assert_eq!(
            layer_media_type(&MediaType::ImageLayer),
            Ok(MediaType::ImageLayer)
        );
        assert_eq!(
            layer_media_type(&MediaType::ImageLayerZstd),
            Ok(MediaType::ImageLayerZstd)
        );
        assert_eq!(
            layer_media_type(&m(DOCKER_LAYER_ZSTD)),
            Ok(MediaType::ImageLayerZstd)
        );
        assert!(layer_media_type(&m("text/plain")).is_err());
        assert!(layer_media_type(&m("")).is_err());
        // What a written manifest names a layer: the same table, unknown types kept.
        assert_eq!(
            manifest_layer_media_type(&m(DOCKER_LAYER_TAR)),
            MediaType::ImageLayer
        );
        assert_eq!(
            manifest_layer_media_type(&m(DOCKER_LAYER_ZSTD)),
            MediaType::ImageLayerZstd
        );
        let odd = m("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip");
        assert_eq!(manifest_layer_media_type(&odd), odd);
    }

    #[test]
    fn manifests_and_indexes() {
        assert!(is_index(&MediaType::ImageIndex));
        assert!(is_index(&MediaType::from(DOCKER_MANIFEST_LIST)));
        assert!(!is_index(&MediaType::ImageManifest));
        assert!(is_image_manifest(&MediaType::from(DOCKER_MANIFEST)));
        assert!(is_image_manifest(&MediaType::ImageManifest));
        assert!(!is_image_manifest(&MediaType::ImageIndex));
    }
}
