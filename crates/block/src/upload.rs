//! Uploading a local block directory and deleting a block from the bucket, in the orders
//! Thanos uses so that a reader never takes a half-written or half-deleted block for a
//! whole one: upload chunks, then the index, then `meta.json` last; delete `meta.json`
//! first, then the rest, then the deletion mark.

use std::path::{Path, PathBuf};

use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use strata_tsdb::meta::BlockFile;
use ulid::Ulid;

use crate::markers::DELETION_MARK;

/// A block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A local file or directory failed.
    #[error("block {block}: {path}: {source}")]
    Io {
        /// The block.
        block: Ulid,
        /// The path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The bucket failed.
    #[error("block {block}: {source}")]
    Bucket {
        /// The block.
        block: Ulid,
        /// The bucket error.
        #[source]
        source: strata_objstore::Error,
    },
    /// A meta.json is unreadable or unwritable.
    #[error("block {block}: meta.json: {message}")]
    Meta {
        /// The block.
        block: Ulid,
        /// What is wrong.
        message: String,
    },
    /// A marker file is unreadable or unwritable.
    #[error("block {block}: {file}: {message}")]
    Marker {
        /// The block.
        block: Ulid,
        /// The marker's file name.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Uploads the block in `dir` as `<id>/…`: chunk segments, the index, then `meta` (with
/// `thanos.files` filled in from the uploaded files) as `meta.json`. Tombstones are not
/// uploaded (Thanos ignores them). Returns the meta as uploaded. `meta.thanos` must be set
/// by the caller (labels, resolution, source); an absent section is uploaded as the default.
pub async fn upload_block(
    bucket: &Bucket,
    id: Ulid,
    dir: &Path,
    mut meta: BlockMeta,
) -> Result<BlockMeta, BlockError> {
    let bucket_err = |source| BlockError::Bucket { block: id, source };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BlockError::Io {
            block: id,
            path,
            source,
        }
    };
    let chunks_dir = dir.join("chunks");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&chunks_dir)
        .map_err(io(&chunks_dir))?
        .flatten()
        .map(|e| e.path())
        .collect();
    segments.sort();
    let mut files = Vec::new();
    for segment in &segments {
        let file_name = segment
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let size = std::fs::metadata(segment).map_err(io(segment))?.len();
        let rel = format!("chunks/{file_name}");
        bucket
            .upload_file(&format!("{id}/{rel}"), segment)
            .await
            .map_err(bucket_err)?;
        files.push(BlockFile {
            rel_path: rel,
            size_bytes: Some(size),
            hash: None,
        });
    }
    let index = dir.join("index");
    let size = std::fs::metadata(&index).map_err(io(&index))?.len();
    bucket
        .upload_file(&format!("{id}/index"), &index)
        .await
        .map_err(bucket_err)?;
    files.push(BlockFile {
        rel_path: "index".into(),
        size_bytes: Some(size),
        hash: None,
    });
    files.push(BlockFile {
        rel_path: "meta.json".into(),
        size_bytes: None,
        hash: None,
    });
    let mut thanos = meta.thanos.take().unwrap_or_default();
    thanos.version = 1;
    thanos.files = files;
    meta.thanos = Some(thanos);
    let json = meta.to_json().map_err(|e| BlockError::Meta {
        block: id,
        message: e.to_string(),
    })?;
    // Every object must be in the bucket, whole, before meta.json makes the block visible
    // (an upload that silently lost a part would otherwise become a corrupt block).
    for file in meta.thanos.iter().flat_map(|t| t.files.iter()) {
        let Some(want) = file.size_bytes else {
            continue;
        };
        let attributes = bucket
            .attributes(&format!("{id}/{}", file.rel_path))
            .await
            .map_err(bucket_err)?;
        if attributes.size != want {
            return Err(BlockError::Meta {
                block: id,
                message: format!(
                    "{} is {} bytes in the bucket, {want} locally; not writing meta.json",
                    file.rel_path, attributes.size
                ),
            });
        }
    }
    // The local block must still be whole: Prometheus may delete a block under the sidecar.
    let local_meta = dir.join("meta.json");
    if !local_meta.exists() {
        return Err(BlockError::Io {
            block: id,
            path: local_meta,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    bucket
        .upload(&format!("{id}/meta.json"), json.into())
        .await
        .map_err(bucket_err)?;
    Ok(meta)
}

/// Deletes every object of a block: `meta.json` first (readers stop seeing the block), then
/// all other files, then the deletion mark (so an interrupted delete is finished by the
/// next cleanup, which finds the mark). Objects already gone are not an error.
pub async fn delete_block(bucket: &Bucket, id: Ulid) -> Result<(), BlockError> {
    let bucket_err = |source| BlockError::Bucket { block: id, source };
    let dir = format!("{id}/");
    let meta = format!("{id}/meta.json");
    let mark = format!("{id}/{DELETION_MARK}");
    match bucket.delete(&meta).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(bucket_err(e)),
    }
    let objects = bucket.iter_recursive(&dir).await.map_err(bucket_err)?;
    for (name, _) in &objects {
        if *name == mark || *name == meta {
            continue;
        }
        match bucket.delete(name).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(bucket_err(e)),
        }
    }
    match bucket.delete(&mark).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(bucket_err(e)),
    }
}
