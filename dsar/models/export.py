"""A finished export bundle: where it is, its checksum, its link's lifetime."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import column_now
from ..database import Base


class ExportBundle(Base):
    __tablename__ = "export_bundles"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"),
                                            primary_key=True)
    filename: Mapped[str] = mapped_column(String(200))
    #: bytes of the zip: bundles pass 2 GiB (a 32-bit integer's limit)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=column_now)
    expires_at: Mapped[datetime | None]
    download_count: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<ExportBundle {self.request_id} {self.size} bytes>"
