"""Arrow results handed to pyarrow, Polars and pandas: one home for the
conversions, used by the managers, their transactions and the mocks.

Every function takes an object exporting the Arrow C stream interface
(``__arrow_c_stream__``), so the data crosses into the library without a
copy and without a Python object per value. pyarrow, Polars and pandas are
optional: ``import dbflow`` needs none of them, and a call whose library is
missing says which extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any

from .exceptions import ParameterError

#: The extra that installs each library.
_EXTRAS = {"pyarrow": "arrow", "polars": "polars", "pandas": "pandas"}

DTYPE_BACKENDS = ("numpy_nullable", "pyarrow")


def require(module: str, operation: str) -> Any:
    """Import ``module`` or raise an ImportError that names the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = _EXTRAS.get(module, module)
        raise ImportError(
            f"{operation} needs {module}, which is not installed: pip install 'dbflow[{extra}]'"
        ) from e


def to_table(stream: Any, operation: str = "fetch_arrow") -> Any:
    """A ``pyarrow.Table`` of every batch of ``stream``."""
    pa = require("pyarrow", operation)
    return pa.RecordBatchReader.from_stream(stream).read_all()


def to_batch(array: Any) -> Any:
    """A ``pyarrow.RecordBatch`` from an object exporting ``__arrow_c_array__``."""
    pa = require("pyarrow", "iter_arrow")
    return pa.record_batch(array)


def to_polars(stream: Any) -> Any:
    """A ``polars.DataFrame`` (Polars reads the C stream itself; pyarrow is
    not needed). Polars requires unique column names: the managers rename a
    repeated one (``id``, ``id_2``) before the data reaches here."""
    pl = require("polars", "fetch_polars")
    return pl.DataFrame(stream)


def to_pandas(stream: Any, dtype_backend: str = "numpy_nullable") -> Any:
    """A ``pandas.DataFrame``, with ``dtype_backend`` as in ``pandas.read_sql``:
    ``"numpy_nullable"`` keeps an integer column with NULLs an integer column
    (``Int64``) and a decimal exact (``decimal.Decimal`` objects);
    ``"pyarrow"`` gives ``ArrowDtype`` columns."""
    if dtype_backend not in DTYPE_BACKENDS:
        raise ParameterError(
            f"fetch_pandas: dtype_backend={dtype_backend!r} is not one of "
            f"{', '.join(map(repr, DTYPE_BACKENDS))}"
        )
    pd = require("pandas", "fetch_pandas")
    require("pyarrow", "fetch_pandas")
    table = to_table(stream, "fetch_pandas")
    if dtype_backend == "pyarrow":
        return table.to_pandas(types_mapper=pd.ArrowDtype)
    return table.to_pandas(types_mapper=_nullable_mapper(pd))


def _nullable_mapper(pd: Any) -> Any:
    """pandas' nullable dtypes for the Arrow types that have one; the rest
    (decimals, dates, times, binary, lists) stay as pyarrow converts them:
    Python objects that hold the value exactly."""
    import pyarrow as pa

    mapping = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.float32(): pd.Float32Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }
    return mapping.get
