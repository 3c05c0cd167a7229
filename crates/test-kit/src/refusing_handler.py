"""An aiosmtpd handler for deskgate's outbound tests: a Maildir like
aiosmtpd.handlers.Mailbox, except that recipients whose address starts with
"refuse" are refused permanently (550 5.1.1), as a real server refuses an
unknown mailbox."""

from aiosmtpd.handlers import Mailbox


class Refusing(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("refuse"):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"
