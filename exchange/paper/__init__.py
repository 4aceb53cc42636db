"""A Binance USDⓈ-M compatible paper exchange: in-process (httpx transport) or on a loopback port."""

from exchange.paper.asgi import PaperServer, paper_asgi_app, serve
from exchange.paper.auth import ApiCredential
from exchange.paper.core import PaperExchange
from exchange.paper.errors import BinanceError
from exchange.paper.faults import Fault, FaultKind
from exchange.paper.response import PaperResponse
from exchange.paper.state import Fill, Order, Position
from exchange.paper.transport import PaperTransport

__all__ = [
    "ApiCredential",
    "BinanceError",
    "Fault",
    "FaultKind",
    "Fill",
    "Order",
    "PaperExchange",
    "PaperResponse",
    "PaperServer",
    "PaperTransport",
    "Position",
    "paper_asgi_app",
    "serve",
]
