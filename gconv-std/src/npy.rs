//! Reading and writing [`Tensor`]s as NumPy `.npy` files (via the `npyz` crate).
//!
//! Reading accepts `float32` and `float64` in either byte order and in C or Fortran
//! order (Fortran arrays are transposed to C order, so the shape and values are the
//! ones numpy shows). Writing produces little-endian `float32` in C order, through a
//! temporary file renamed into place: a failed write never leaves a partial file.
//! For int8 work, [`read_npy_i8`], [`read_npy_i32`] and [`read_npy_f32_strict`] read
//! exactly one dtype each (no conversion), and [`write_npy_i8`] writes int8.
//!
//! Compiled only with the `npy` Cargo feature (which `cli` implies).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use npyz::{DType, NpyFile, Order, WriterBuilder};

use crate::error::Error;
use crate::tensor::Tensor;

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a `float32` or `float64` `.npy` file into an f32 [`Tensor`] (float64 values
/// are rounded to the nearest f32).
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be opened, is not a valid
/// `.npy` file, is truncated, or holds another dtype.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, Error> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let npy = NpyFile::new(BufReader::new(file))
        .map_err(|e| file_error(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let order = npy.order();
    let dtype = match npy.dtype() {
        DType::Plain(ts) => ts.to_string(),
        other => {
            return Err(file_error(
                path,
                format!("dtype {} is not float32 or float64", other.descr()),
            ));
        }
    };
    let truncated =
        |e: std::io::Error| file_error(path, format!("cannot read the data (truncated?): {e}"));
    let data: Vec<f32> = match &dtype[1..] {
        "f4" => npy.into_vec::<f32>().map_err(truncated)?,
        "f8" => npy
            .into_vec::<f64>()
            .map_err(truncated)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        _ => {
            return Err(file_error(
                path,
                format!(
                    "dtype {dtype} is not float32 or float64 (convert with x.astype(np.float32))"
                ),
            ));
        }
    };
    let tensor = Tensor::new(shape.clone(), data).map_err(|e| file_error(path, e.to_string()))?;
    Ok(match order {
        Order::C => tensor,
        Order::Fortran => fortran_to_c(tensor),
    })
}

/// Reads a `.npy` file whose dtype is exactly `descr` (`"i1"` for int8, `"i4"` for
/// int32, `"f4"` for float32, either byte order), in C or Fortran order, as `(shape, values)` in
/// C order. No conversion between integer types: a value that does not fit would be
/// changed silently, so another dtype is an error that names it.
///
/// # Errors
/// [`Error::File`] naming the path, the expected and the found dtype.
fn read_npy_int<T: npyz::Deserialize + Copy>(
    path: &Path,
    descr: &str,
    name: &str,
) -> Result<(Vec<usize>, Vec<T>), Error> {
    let file = File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let npy = NpyFile::new(BufReader::new(file))
        .map_err(|e| file_error(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let order = npy.order();
    let found = npy.dtype().descr();
    if !matches!(&npy.dtype(), DType::Plain(ts) if ts.to_string()[1..] == *descr) {
        return Err(file_error(
            path,
            format!("dtype {found} is not {name} (convert with x.astype(np.{name}))"),
        ));
    }
    let data: Vec<T> = npy
        .into_vec::<T>()
        .map_err(|e| file_error(path, format!("cannot read the data (truncated?): {e}")))?;
    if data.len() != shape.iter().product::<usize>() {
        return Err(file_error(path, "data length does not match the shape"));
    }
    Ok(match order {
        Order::C => (shape, data),
        Order::Fortran => {
            let data = fortran_to_c_values(&shape, &data);
            (shape, data)
        }
    })
}

/// Reads an `int8` `.npy` file as `(shape, values)` (C order).
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be read or is not int8.
pub fn read_npy_i8(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<i8>), Error> {
    read_npy_int(path.as_ref(), "i1", "int8")
}

/// Reads an `int32` `.npy` file as `(shape, values)` (C order).
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be read or is not int32.
pub fn read_npy_i32(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<i32>), Error> {
    read_npy_int(path.as_ref(), "i4", "int32")
}

/// Reads a `float32` `.npy` file exactly (no float64: rounding a scale to f32 would
/// change it silently) as `(shape, values)`.
///
/// # Errors
/// [`Error::File`] naming the path when the file cannot be read or is not float32.
pub fn read_npy_f32_strict(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>), Error> {
    read_npy_int(path.as_ref(), "f4", "float32")
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
}
