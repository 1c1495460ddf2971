"""The unlabeled image sets Stage 1 runs on: the offline demo photos, SA-1B tars, or any folder.

Subsets are always defined by a sorted (or user-given) id list, never by directory order (the official code took
the first N of `os.listdir`, which differs between file systems).
"""
from __future__ import annotations

import csv
import shutil
import tarfile
from pathlib import Path

from unsamv2.download import download_file, require_user_file
from unsamv2.io.atomic import atomic_write_text
from unsamv2.io.images import list_images, read_id_list

# Real photographs shipped inside scikit-image (no download): colour, grayscale and RGBA files on purpose, so the
# demo exercises the image decoder's conversions too.
DEMO_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "camera.png",
    "coins.png",
    "logo.png",
)

SA1B_PAGE = "https://ai.meta.com/datasets/segment-anything-downloads/"


def export_demo_photos(out_dir: Path) -> list[Path]:
    """Copy scikit-image's bundled photographs into `out_dir` (idempotent)."""
    import skimage

    src_dir = Path(skimage.__file__).parent / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DEMO_PHOTOS:
        src = src_dir / name
        if not src.is_file():
            raise FileNotFoundError(f"scikit-image does not ship {src}; reinstall scikit-image>=0.22")
        dst = out_dir / name
        if not dst.exists():
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        written.append(dst)
    return written


def select_images(folder: Path, max_images: int, id_list: Path | None = None) -> list[tuple[int, Path]]:
    """The first `max_images` images of `folder`, sorted by file name or ordered by `id_list` (file stems).

    Returns (image_id, path) pairs; image ids are 1-based positions in this list unless the file is an SA-1B
    `sa_<n>` image, which keeps its own id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist (config key images.folder)")
    available = {p.stem: p for p in list_images(folder)}
    if not available:
        # An empty list would only fail later, in a job with nothing to do; say it where the folder is named.
        raise FileNotFoundError(f"image folder {folder} holds no images (jpg, jpeg, png, bmp, tif, tiff or webp; "
                                f"config key images.folder)")
    if id_list is not None:
        ids = read_id_list(Path(id_list))
        missing = [i for i in ids if i not in available]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} id(s) of {id_list} have no image in {folder}, e.g. {', '.join(missing[:5])}"
            )
        chosen = [available[i] for i in ids]
    else:
        chosen = [available[k] for k in sorted(available)]
    chosen = chosen[:max_images]
    out = []
    for pos, path in enumerate(chosen, start=1):
        stem = path.stem
        image_id = int(stem[3:]) if stem.startswith("sa_") and stem[3:].isdigit() else pos
        out.append((image_id, path))
    return out


def write_image_list(items: list[tuple[int, Path]], dest: Path) -> None:
    atomic_write_text(dest, "".join(f"{i}\t{p}\n" for i, p in items))


def read_image_list(path: Path) -> list[tuple[int, Path]]:
    """Read `images.txt` written by `write_image_list`: `<image_id>\\t<path>` per line."""
    items: list[tuple[int, Path]] = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{lineno}: expected '<image_id>\\t<path>', got {line!r}")
        items.append((int(parts[0]), Path(parts[1])))
    return items


def read_sa1b_links(links_file: Path) -> dict[str, str]:
    """Parse the SA-1B links file (header row, then `<file_name>\\t<cdn_link>`)."""
    require_user_file(
        links_file,
        "the SA-1B links file (a TSV of tar names and signed download URLs)",
        f"accept the SA-1B license at {SA1B_PAGE}, download the links file, and save it as {links_file}",
    )
    with open(links_file, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["file_name", "cdn_link"]:
        raise ValueError(f"{links_file}: expected a header 'file_name<TAB>cdn_link' (the SA-1B links file)")
    links = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) < 2:
            raise ValueError(f"{links_file}:{lineno}: expected two tab-separated columns")
        links[row[0].strip()] = row[1].strip()
    return links


def fetch_sa1b_tar(links_file: Path, tar_name: str, dest_dir: Path) -> Path:
    """Download one SA-1B tar named in the links file (resumable; SA-1B publishes no checksums)."""
    links = read_sa1b_links(links_file)
    if tar_name not in links:
        raise ValueError(f"{tar_name} is not listed in {links_file} (it lists {len(links)} tars)")
    return download_file(links[tar_name], Path(dest_dir) / tar_name)


def extract_images(tar_path: Path, out_dir: Path) -> list[Path]:
    """Extract the `.jpg` members of an SA-1B tar into `out_dir`, each written atomically (safe to rerun).

    Each image's annotation JSON (`sa_<id>.json`) is extracted beside it: the `sa1b_gt` and `maskcut+sa1b_gt`
    divides of Stage 1 read it there. Returns the images only.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = Path(member.name).name
            is_image = name.lower().endswith(".jpg")
            if not member.isfile() or not (is_image or name.lower().endswith(".json")):
                continue
            dst = out_dir / name
            if not dst.exists():
                src = tar.extractfile(member)
                assert src is not None
                tmp = dst.with_name(dst.name + ".tmp")
                with open(tmp, "wb") as fh:
                    shutil.copyfileobj(src, fh)
                tmp.replace(dst)
            if is_image:
                written.append(dst)
    return sorted(written)
