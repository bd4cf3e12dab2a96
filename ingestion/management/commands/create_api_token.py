from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from opsview import audit
from opsview.models import ApiToken


class Command(BaseCommand):
    help = "Create a read-API bearer token for a user and print it (alone on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        api_token, token = ApiToken.issue(user, name)
        audit.record("api_token.created", f"api-token:{api_token.pk}",
                     actor_label="command:create_api_token", user=username,
                     hint=api_token.token_hint)
        self.stdout.write(f"Token for {username} (stored hashed; shown once). Send it as "
                          "'Authorization: Bearer <token>':")
        self.stdout.write(token)
