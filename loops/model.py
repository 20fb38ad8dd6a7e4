"""The model port: one async method, `complete`, plus the message types it speaks.

Messages follow the OpenAI chat shape because every provider litellm supports maps onto it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text exactly as the model produced it; parsed by the tool layer


@dataclass(frozen=True, kw_only=True)
class Message:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # set on role="tool" answers
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    timeout: float | None = None
    response_format: Literal["text", "json"] = "text"
    purpose: Literal["maker", "judge"] = "maker"


@dataclass(frozen=True, kw_only=True)
class CallUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None  # None: the provider's price is unknown to us

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, kw_only=True)
class ModelResponse:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: CallUsage = field(default_factory=CallUsage)
    model: str = ""
    provider: str = ""
    finish_reason: str = "stop"

    def as_message(self) -> Message:
        return Message(role="assistant", content=self.text, tool_calls=self.tool_calls)


class ModelPort(Protocol):
    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Send one request; raise a `loops.errors.ModelError` subclass on failure."""
        ...
