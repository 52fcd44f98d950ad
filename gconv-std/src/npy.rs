//! Reading and writing [`Tensor`]s as NumPy `.npy` files (via the `npyz` crate).
//!
//! Reading accepts `float32` and `float64` in either byte order and in C or Fortran
//! order (Fortran arrays are transposed to C order, so the shape and values are the
//! ones numpy shows). Writing produces little-endian `float32` in C order, through a
//! temporary file renamed into place: a failed write never leaves a partial file.
//! For int8 work, [`read_npy_i8`], [`read_npy_i32`] and [`read_npy_f32_strict`] read
//! exactly one dtype each (no conversion), and [`write_npy_i8`] writes int8. Every
//! reader has a `_bytes` twin that reads a file already in memory.
//!
//! # Limits
//!
//! A `.npy` file comes from elsewhere, so its header is checked before anything is
//! allocated from what it claims: the header may be at most [`MAX_NPY_HEADER_LEN`]
//! bytes and must fit in the file, its brackets may nest at most
//! [`MAX_NPY_HEADER_DEPTH`] deep, the product of its shape must fit in 64 bits, and
//! the data the shape needs (elements times item size) must be present in the file.
//! Each violation is one [`Error::File`] that says which limit, never a panic or a
//! huge allocation.
//!
//! Compiled only with the `npy` Cargo feature (which `cli` implies).

use std::fs::File;
use std::io::{BufReader, BufWriter, Chain, Cursor, Read, Write};
use std::path::Path;

use npyz::{DType, NpyFile, Order, WriterBuilder};

use crate::error::Error;
use crate::tensor::Tensor;

/// The longest `.npy` header (the text after the magic, version and length fields)
/// accepted, in bytes. numpy writes headers of 64 to a few hundred bytes, and its own
/// reader refuses more than 10,000 by default.
pub const MAX_NPY_HEADER_LEN: usize = 16 * 1024;

/// The deepest nesting of brackets (`(`, `[`, `{`) accepted in a `.npy` header: a plain
/// array's header nests 2 deep (the dict and the shape tuple), a structured one 4. The
/// Python-literal parser npyz uses backtracks exponentially in the depth: fuzzing found
/// a 171-byte header of 11 unclosed braces that took more than 10 s to refuse.
pub const MAX_NPY_HEADER_DEPTH: usize = 4;

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    named_error(&path.display().to_string(), message)
}

fn named_error(name: &str, message: impl Into<String>) -> Error {
    Error::File {
        path: name.to_string(),
        message: message.into(),
    }
}

/// What [`open_npy`] returns: the parsed header over the rest of the input, and how
/// many bytes of data the input has after the header.
struct Opened<R: Read> {
    npy: NpyFile<Chain<Cursor<Vec<u8>>, R>>,
    data_len: u64,
}

/// Opens a file for [`open_npy`], with its length.
fn open_file(path: &Path) -> Result<(BufReader<File>, u64), Error> {
    let file = File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| file_error(path, format!("cannot open: {e}")))?
        .len();
    Ok((BufReader::new(file), len))
}

/// Reads the header of a `.npy` input of `len` bytes, checking the limits of the
/// module documentation before `npyz` parses it (npyz allocates the header length the
/// file claims and multiplies the shape without checking).
fn open_npy<R: Read>(name: &str, mut reader: R, len: u64) -> Result<Opened<R>, Error> {
    let io_error = |e: std::io::Error| named_error(name, format!("cannot read: {e}"));
    // Magic (6), version (2), header length (2 for version 1, 4 for versions 2 and 3).
    let mut head = Vec::with_capacity(12);
    (&mut reader)
        .take(12)
        .read_to_end(&mut head)
        .map_err(io_error)?;
    let declared = match head.as_slice() {
        [0x93, b'N', b'U', b'M', b'P', b'Y', 1, 0, a, b, ..] => {
            Some((10, usize::from(u16::from_le_bytes([*a, *b]))))
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, 0, a, b, c, d] => {
            let n = u32::from_le_bytes([*a, *b, *c, *d]);
            Some((12, usize::try_from(n).unwrap_or(usize::MAX)))
        }
        // Not a .npy file, or a version npyz refuses: its error says which.
        _ => None,
    };
    if let Some((start, header_len)) = declared {
        if header_len > MAX_NPY_HEADER_LEN {
            return Err(named_error(
                name,
                format!(
                    "not a valid .npy file: the header claims {header_len} bytes, more than \
                     the limit of {MAX_NPY_HEADER_LEN}"
                ),
            ));
        }
        let end = start + header_len;
        if end as u64 > len {
            return Err(named_error(
                name,
                format!(
                    "not a valid .npy file (truncated?): the header claims {header_len} bytes \
                     but the file has only {len} in all"
                ),
            ));
        }
        if end > head.len() {
            (&mut reader)
                .take((end - head.len()) as u64)
                .read_to_end(&mut head)
                .map_err(io_error)?;
        }
        if head.len() >= end {
            check_header_text(name, &head[start..end])?;
        }
    }
    let consumed = head.len() as u64;
    let npy = NpyFile::new(Cursor::new(head).chain(reader))
        .map_err(|e| named_error(name, format!("not a valid .npy file: {e}")))?;
    Ok(Opened {
        npy,
        data_len: len.saturating_sub(consumed),
    })
}

/// Checks the nesting depth of a header's text and that every `'shape'` entry of its
/// dict has a product (of its nonzero dims) that fits in 64 bits. Text that does not parse is left to npyz,
/// whose error names the problem.
fn check_header_text(name: &str, text: &[u8]) -> Result<(), Error> {
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NPY_HEADER_DEPTH {
                    return Err(named_error(
                        name,
                        format!(
                            "not a valid .npy file: the header nests brackets more than \
                             {MAX_NPY_HEADER_DEPTH} deep"
                        ),
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let Ok(text) = std::str::from_utf8(text) else {
        return Ok(());
    };
    let Ok(py_literal::Value::Dict(entries)) = text.trim_end().parse::<py_literal::Value>() else {
        return Ok(());
    };
    for (key, value) in &entries {
        if key.as_string().map(String::as_str) != Some("shape") {
            continue;
        }
        let (py_literal::Value::Tuple(dims) | py_literal::Value::List(dims)) = value else {
            continue;
        };
        // npyz multiplies the dims and their prefixes (the strides) in u64: even with
        // a zero dim (an empty array), the product of the others must fit.
        let mut product = Some(1u64);
        for dim in dims {
            if let py_literal::Value::Integer(d) = dim
                && let Ok(d) = u64::try_from(d)
            {
                product = product.and_then(|p| p.checked_mul(d.max(1)));
            }
        }
        if product.is_none() {
            return Err(named_error(
                name,
                format!(
                    "not a valid .npy file: the shape {value} is too large (the product of \
                     its nonzero dims does not fit in 64 bits)"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that the `data_len` bytes after the header hold the `shape`'s elements of
/// `item_size` bytes, before any are read; returns the shape as `usize`s.
fn checked_shape(
    name: &str,
    shape: &[u64],
    item_size: u64,
    data_len: u64,
) -> Result<Vec<usize>, Error> {
    let needed = shape
        .iter()
        .try_fold(item_size, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= data_len);
    let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
    match (needed, dims) {
        (Some(_), Some(dims)) => Ok(dims),
        _ => Err(named_error(
            name,
            format!(
                "shape {shape:?} needs {} bytes of data but the file has only {data_len} \
                 after its header (truncated, or a shape that is not the file's?)",
                shape
                    .iter()
                    .try_fold(item_size, |acc, &d| acc.checked_mul(d))
                    .map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
            ),
        )),
    }
}

/// Reads a `float32` or `float64` `.npy` file into an f32 [`Tensor`] (float64 values
/// are rounded to the nearest f32).
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be opened, is not a valid
/// `.npy` file, is truncated, holds another dtype or breaks a limit of the module
/// documentation.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, Error> {
    let path = path.as_ref();
    let (reader, len) = open_file(path)?;
    read_float(&path.display().to_string(), reader, len)
}

/// [`read_npy`] of a `.npy` file already in memory; errors name it `name`.
///
/// # Errors
/// As [`read_npy`].
pub fn read_npy_bytes(name: &str, bytes: &[u8]) -> Result<Tensor, Error> {
    read_float(name, bytes, bytes.len() as u64)
}

fn read_float<R: Read>(name: &str, reader: R, len: u64) -> Result<Tensor, Error> {
    let Opened { npy, data_len } = open_npy(name, reader, len)?;
    let order = npy.order();
    let dtype = match npy.dtype() {
        DType::Plain(ts) => ts.to_string(),
        other => {
            return Err(named_error(
                name,
                format!("dtype {} is not float32 or float64", other.descr()),
            ));
        }
    };
    let truncated =
        |e: std::io::Error| named_error(name, format!("cannot read the data (truncated?): {e}"));
    let (shape, data): (Vec<usize>, Vec<f32>) = match &dtype[1..] {
        "f4" => (
            checked_shape(name, npy.shape(), 4, data_len)?,
            npy.into_vec::<f32>().map_err(truncated)?,
        ),
        "f8" => (
            checked_shape(name, npy.shape(), 8, data_len)?,
            npy.into_vec::<f64>()
                .map_err(truncated)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        ),
        _ => {
            return Err(named_error(
                name,
                format!(
                    "dtype {dtype} is not float32 or float64 (convert with x.astype(np.float32))"
                ),
            ));
        }
    };
    let tensor = Tensor::new(shape, data).map_err(|e| named_error(name, e.to_string()))?;
    Ok(match order {
        Order::C => tensor,
        Order::Fortran => fortran_to_c(tensor),
    })
}

/// Reads a `.npy` input whose dtype is exactly `descr` (`"i1"` for int8, `"i4"` for
/// int32, `"f4"` for float32, either byte order), in C or Fortran order, as `(shape, values)` in
/// C order. No conversion between integer types: a value that does not fit would be
/// changed silently, so another dtype is an error that names it.
///
/// # Errors
/// [`Error::File`] naming the input, the expected and the found dtype, or the limit
/// broken.
fn read_exact_dtype<T: npyz::Deserialize + Copy, R: Read>(
    (name, reader, len): (&str, R, u64),
    descr: &str,
    type_name: &str,
) -> Result<(Vec<usize>, Vec<T>), Error> {
    let Opened { npy, data_len } = open_npy(name, reader, len)?;
    let order = npy.order();
    let found = npy.dtype().descr();
    if !matches!(&npy.dtype(), DType::Plain(ts) if ts.to_string()[1..] == *descr) {
        return Err(named_error(
            name,
            format!("dtype {found} is not {type_name} (convert with x.astype(np.{type_name}))"),
        ));
    }
    let shape = checked_shape(name, npy.shape(), size_of::<T>() as u64, data_len)?;
    let data: Vec<T> = npy
        .into_vec::<T>()
        .map_err(|e| named_error(name, format!("cannot read the data (truncated?): {e}")))?;
    if data.len() != shape.iter().product::<usize>() {
        return Err(named_error(name, "data length does not match the shape"));
    }
    Ok(match order {
        Order::C => (shape, data),
        Order::Fortran => {
            let data = fortran_to_c_values(&shape, &data);
            (shape, data)
        }
    })
}

/// [`read_exact_dtype`] of a file.
fn read_file_exact<T: npyz::Deserialize + Copy>(
    path: &Path,
    descr: &str,
    type_name: &str,
) -> Result<(Vec<usize>, Vec<T>), Error> {
    let (reader, len) = open_file(path)?;
    read_exact_dtype((&path.display().to_string(), reader, len), descr, type_name)
}

/// Reads an `int8` `.npy` file as `(shape, values)` (C order).
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be read or is not int8.
pub fn read_npy_i8(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<i8>), Error> {
    read_file_exact(path.as_ref(), "i1", "int8")
}

/// [`read_npy_i8`] of a file already in memory; errors name it `name`.
///
/// # Errors
/// As [`read_npy_i8`].
pub fn read_npy_i8_bytes(name: &str, bytes: &[u8]) -> Result<(Vec<usize>, Vec<i8>), Error> {
    read_exact_dtype((name, bytes, bytes.len() as u64), "i1", "int8")
}

/// Reads an `int32` `.npy` file as `(shape, values)` (C order).
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be read or is not int32.
pub fn read_npy_i32(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<i32>), Error> {
    read_file_exact(path.as_ref(), "i4", "int32")
}

/// [`read_npy_i32`] of a file already in memory; errors name it `name`.
///
/// # Errors
/// As [`read_npy_i32`].
pub fn read_npy_i32_bytes(name: &str, bytes: &[u8]) -> Result<(Vec<usize>, Vec<i32>), Error> {
    read_exact_dtype((name, bytes, bytes.len() as u64), "i4", "int32")
}

/// Reads a `float32` `.npy` file exactly (no float64: rounding a scale to f32 would
/// change it silently) as `(shape, values)`.
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be read or is not float32.
pub fn read_npy_f32_strict(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>), Error> {
    read_file_exact(path.as_ref(), "f4", "float32")
}

/// [`read_npy_f32_strict`] of a file already in memory; errors name it `name`.
///
/// # Errors
/// As [`read_npy_f32_strict`].
pub fn read_npy_f32_strict_bytes(
    name: &str,
    bytes: &[u8],
) -> Result<(Vec<usize>, Vec<f32>), Error> {
    read_exact_dtype((name, bytes, bytes.len() as u64), "f4", "float32")
}

/// Writes an `int8` C-order `.npy` file of `shape`, through a temporary file like
/// [`write_npy`].
///
/// # Errors
/// [`Error::File`] naming the path when it cannot be written, or when `data` does not
/// have `shape`'s length.
pub fn write_npy_i8(path: impl AsRef<Path>, shape: &[usize], data: &[i8]) -> Result<(), Error> {
    let path = path.as_ref();
    if data.len() != shape.iter().product::<usize>() {
        return Err(file_error(path, "data length does not match the shape"));
    }
    write_atomically(path, |tmp| {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut out = BufWriter::new(File::create(tmp)?);
        let mut writer = npyz::WriteOptions::<i8>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut out)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })
}

/// Values stored in Fortran order are the C-order values of the array with reversed
/// axes; transpose them back.
fn fortran_to_c(tensor: Tensor) -> Tensor {
    let (shape, data) = tensor.into_parts();
    let out = fortran_to_c_values(&shape, &data);
    Tensor::new(shape, out).expect("same length as the input")
}

/// [`fortran_to_c`] on plain values.
fn fortran_to_c_values<T: Copy>(shape: &[usize], data: &[T]) -> Vec<T> {
    let rank = shape.len();
    // Strides of the Fortran layout: axis 0 is the fastest.
    let mut f_strides = vec![1usize; rank];
    for axis in 1..rank {
        f_strides[axis] = f_strides[axis - 1] * shape[axis - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; rank];
    for _ in 0..data.len() {
        let offset: usize = index.iter().zip(&f_strides).map(|(i, s)| i * s).sum();
        out.push(data[offset]);
        // Advance the C-order multi-index (last axis fastest).
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Writes `tensor` as a little-endian `float32`, C-order `.npy` file. The data goes
/// to a temporary file beside `path` that is renamed over it only when complete.
///
/// # Errors
/// [`Error::File`] naming the path when it cannot be written.
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), Error> {
    write_atomically(path.as_ref(), |tmp| write_to(tmp, tensor))
}

/// Runs `write` on a temporary file beside `path` and renames it over `path` when it
/// succeeded; removes it otherwise.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), Error> {
    let name = path
        .file_name()
        .ok_or_else(|| file_error(path, "not a file path"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, format!("cannot write: {e}"))
    })
}

fn write_to(path: &Path, tensor: &Tensor) -> std::io::Result<()> {
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let mut out = BufWriter::new(File::create(path)?);
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()?;
    writer.extend(tensor.data().iter().copied())?;
    writer.finish()?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gconv-npy-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trip_f32() {
        let dir = tmp_dir("rt");
        let t = Tensor::from_fn(vec![2, 3, 4], |i| i as f32 * 0.5 - 3.0);
        let p = dir.join("t.npy");
        write_npy(&p, &t).unwrap();
        assert_eq!(read_npy(&p).unwrap(), t);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn reads_f64_and_fortran_order() {
        let dir = tmp_dir("f64");
        let p = dir.join("f.npy");
        // A 2x3 float64 array [[0,1,2],[3,4,5]] stored in Fortran order.
        let mut file = File::create(&p).unwrap();
        let mut w = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[2, 3])
            .order(Order::Fortran)
            .writer(&mut file)
            .begin_nd()
            .unwrap();
        w.extend([0.0, 3.0, 1.0, 4.0, 2.0, 5.0]).unwrap();
        w.finish().unwrap();
        let t = read_npy(&p).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.data(), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let dir = tmp_dir("bad");
        let missing = dir.join("missing.npy");
        let e = read_npy(&missing).unwrap_err().to_string();
        assert!(
            e.contains("missing.npy") && e.contains("cannot open"),
            "{e}"
        );

        let text = dir.join("text.npy");
        std::fs::write(&text, "hello").unwrap();
        let e = read_npy(&text).unwrap_err().to_string();
        assert!(
            e.contains("text.npy") && e.contains("not a valid .npy"),
            "{e}"
        );

        let ints = dir.join("ints.npy");
        npyz::to_file_1d(&ints, [1i32, 2, 3]).unwrap();
        let e = read_npy(&ints).unwrap_err().to_string();
        assert!(
            e.contains("ints.npy") && e.contains("<i4") && e.contains("float32"),
            "{e}"
        );

        let good = dir.join("good.npy");
        write_npy(&good, &Tensor::zeros(vec![4, 4])).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.join("cut.npy");
        std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
        let e = read_npy(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.npy"), "{e}");

        let no_dir = dir.join("nope").join("out.npy");
        let e = write_npy(&no_dir, &Tensor::zeros(vec![1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("out.npy") && e.contains("cannot write"), "{e}");
    }

    /// A version-1 `.npy` file with this header text (padded as numpy does) and data.
    fn npy_v1(header: &str, data: &[u8]) -> Vec<u8> {
        let mut text = header.to_string();
        while !(10 + text.len() + 1).is_multiple_of(64) {
            text.push(' ');
        }
        text.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend(u16::try_from(text.len()).unwrap().to_le_bytes());
        out.extend(text.as_bytes());
        out.extend(data);
        out
    }

    /// Every reader gives an error whose message contains `part`.
    fn all_refuse(bytes: &[u8], part: &str) {
        let errors = [
            read_npy_bytes("h.npy", bytes).map(drop),
            read_npy_i8_bytes("h.npy", bytes).map(drop),
            read_npy_i32_bytes("h.npy", bytes).map(drop),
            read_npy_f32_strict_bytes("h.npy", bytes).map(drop),
        ];
        for e in errors {
            let e = e.unwrap_err().to_string();
            assert!(
                e.starts_with("h.npy: ") && e.contains(part),
                "{part:?} not in {e}"
            );
        }
    }

    #[test]
    fn bytes_read_like_files() {
        let dir = tmp_dir("bytes");
        let p = dir.join("t.npy");
        let t = Tensor::from_fn(vec![3, 2], |i| i as f32 - 1.5);
        write_npy(&p, &t).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(read_npy_bytes("t.npy", &bytes).unwrap(), t);
        let (shape, values) = read_npy_f32_strict_bytes("t.npy", &bytes).unwrap();
        assert_eq!((shape.as_slice(), values.as_slice()), (t.shape(), t.data()));
        let i8s = dir.join("i.npy");
        write_npy_i8(&i8s, &[2, 2], &[1, -2, 3, -128]).unwrap();
        let bytes = std::fs::read(&i8s).unwrap();
        assert_eq!(
            read_npy_i8_bytes("i.npy", &bytes).unwrap(),
            (vec![2, 2], vec![1, -2, 3, -128])
        );
        assert_eq!(
            read_npy_i8(&i8s).unwrap(),
            (vec![2, 2], vec![1, -2, 3, -128])
        );
    }

    #[test]
    fn a_header_length_over_the_limit_is_refused_before_reading_it() {
        // Version 2 claims a 4 GiB header in a 16-byte file: npyz would allocate it.
        let mut v2 = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
        v2.extend(b"{'de");
        all_refuse(
            &v2,
            "the header claims 4294967295 bytes, more than the limit of 16384",
        );
        // Version 1: 60,000 bytes, present, but over the limit.
        let mut v1 = b"\x93NUMPY\x01\x00".to_vec();
        v1.extend(60_000u16.to_le_bytes());
        v1.resize(10 + 60_000, b' ');
        all_refuse(&v1, "more than the limit of 16384");
        // Under the limit but longer than the file.
        let mut short = b"\x93NUMPY\x03\x00".to_vec();
        short.extend(1000u32.to_le_bytes());
        short.extend(b"{'descr': '<f4'");
        all_refuse(
            &short,
            "the header claims 1000 bytes but the file has only 27 in all",
        );
    }

    #[test]
    fn a_shape_that_overflows_is_refused() {
        // 2^32 * 2^32 * 2 elements: npyz multiplies without checking (a panic in debug
        // builds, a wrapped count otherwise).
        let bytes = npy_v1(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }",
            &[],
        );
        all_refuse(&bytes, "is too large");
        // An empty array whose other dims overflow: npyz's strides would.
        let bytes = npy_v1(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }",
            &[],
        );
        all_refuse(&bytes, "is too large");
        // The last 'shape' of a dict wins in npyz: every one is checked.
        let bytes = npy_v1(
            "{'shape': (2,), 'descr': '<f4', 'fortran_order': False, 'shape': [18446744073709551615, 3], }",
            &[],
        );
        all_refuse(&bytes, "is too large");
    }

    #[test]
    fn a_shape_that_claims_more_data_than_the_file_has_is_refused_before_reading() {
        // A terabyte of float32 claimed by a 128-byte file.
        let bytes = npy_v1(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (500000, 500000), }",
            &[0; 64],
        );
        let message = "shape [500000, 500000] needs 1000000000000 bytes of data but the file \
                       has only 64 after its header";
        for e in [
            read_npy_bytes("h.npy", &bytes).map(drop),
            read_npy_f32_strict_bytes("h.npy", &bytes).map(drop),
        ] {
            let e = e.unwrap_err().to_string();
            assert!(e.contains(message), "{e}");
        }
        let bytes = npy_v1(
            "{'descr': '|i1', 'fortran_order': True, 'shape': (65, 1), }",
            &[0; 64],
        );
        let e = read_npy_i8_bytes("h.npy", &bytes).unwrap_err().to_string();
        assert!(
            e.contains("needs 65 bytes of data but the file has only 64"),
            "{e}"
        );
        // One byte fewer than a float64 needs.
        let bytes = npy_v1(
            "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 7],
        );
        let e = read_npy_bytes("h.npy", &bytes).unwrap_err().to_string();
        assert!(
            e.contains("needs 8 bytes of data but the file has only 7"),
            "{e}"
        );
    }

    #[test]
    fn a_deeply_nested_header_is_refused_before_parsing() {
        // 5,000 nested tuples: the Python-literal parser recurses once per level.
        let deep = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': {}1{}, }}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        all_refuse(&npy_v1(&deep, &[]), "nests brackets more than 4 deep");
        // Found by fuzzing: unclosed braces make the parser backtrack exponentially (11
        // took more than 10 s); refused at once, and a plain header still reads.
        let start = std::time::Instant::now();
        let braces = format!(
            "{}'descr': '<f4', 'fortran_order': False, 'shape': (), }}",
            "{".repeat(11)
        );
        all_refuse(&npy_v1(&braces, &[0; 4]), "nests brackets more than 4 deep");
        assert!(start.elapsed().as_secs() < 2, "{:?}", start.elapsed());
        let plain = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
        assert_eq!(
            read_npy_bytes("p", &npy_v1(plain, &[0; 4]))
                .unwrap()
                .shape(),
            &[1]
        );
    }

    #[test]
    fn hostile_files_on_disk_are_refused_too() {
        let dir = tmp_dir("hostile");
        let p = dir.join("big.npy");
        let bytes = npy_v1(
            "{'descr': '<i4', 'fortran_order': False, 'shape': (1000000000000,), }",
            &[],
        );
        std::fs::write(&p, bytes).unwrap();
        let e = read_npy_i32(&p).unwrap_err().to_string();
        assert!(
            e.contains("big.npy") && e.contains("needs 4000000000000 bytes"),
            "{e}"
        );
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("is not float32 or float64"), "{e}");
    }
}
