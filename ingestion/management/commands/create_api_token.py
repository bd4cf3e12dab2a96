from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from opsview import audit
from opsview.models import ApiToken


class Command(BaseCommand):
    help = "Create an API bearer token for a user and print it (alone on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for")
        parser.add_argument("--scopes", default="read",
                            help="space-separated: read, triage (default read)")

    def handle(self, username: str, name: str, scopes: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        try:
            api_token, token = ApiToken.issue(user, name, scopes)
        except ValidationError as error:
            raise CommandError(f"--scopes: {error.messages[0]}") from None
        audit.record("api_token.created", f"api-token:{api_token.pk}",
                     actor_label="command:create_api_token", user=username,
                     hint=api_token.token_hint, scopes=api_token.scopes)
        self.stdout.write(f"Token for {username} (stored hashed; shown once). Send it as "
                          "'Authorization: Bearer <token>':")
        self.stdout.write(token)
