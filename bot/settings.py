"""All settings, read from the environment (prefix ``DESKBOT_``) and an optional ``.env`` file.

Every field is documented in the README's settings table; keep the two in step.
"""

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crm_core.db import DEFAULT_DATABASE_URL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DESKBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- Telegram ---------------------------------------------------------------------------
    telegram_token: SecretStr | None = Field(
        default=None, description="Bot token from @BotFather (required by `deskbot run`)."
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org/bot",
        description="Bot API base URL; the token is appended as PTB does.",
    )
    telegram_file_api_url: str = Field(
        default="https://api.telegram.org/file/bot", description="Bot API file base URL."
    )
    agent_chat_id: int | None = Field(
        default=None, description="The agents' supergroup (forum or plain); bot must be admin."
    )
    supervisor_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="Comma-separated Telegram user ids of supervisors."
    )

    # --- Storage and knowledge base ---------------------------------------------------------
    database_url: str = Field(default=DEFAULT_DATABASE_URL, description="SQLAlchemy async URL.")
    kb_dir: Path | None = Field(
        default=None, description="Knowledge-base folder; default: the bundled sample."
    )

    # --- Behaviour --------------------------------------------------------------------------
    log_level: str = Field(default="INFO", description="Python logging level.")

    @field_validator("supervisor_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError(
                    "must be comma-separated numeric Telegram user ids, e.g. 123,456"
                ) from None
        return value


def describe_validation_error(error: ValidationError) -> str:
    """One clear line per bad setting, naming it as the user wrote it (``DESKBOT_X``)."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        lines.append(f"DESKBOT_{field.upper()}: {item['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
