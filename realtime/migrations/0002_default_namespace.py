"""Create the namespace ``default``, as every new AppSync Event API has."""

from django.db import migrations


def create_default(apps, schema_editor):
    Namespace = apps.get_model("realtime", "Namespace")
    Namespace.objects.get_or_create(name="default", defaults={"description": "Created with the API."})


def remove_default(apps, schema_editor):
    apps.get_model("realtime", "Namespace").objects.filter(name="default").delete()


class Migration(migrations.Migration):
    dependencies = [("realtime", "0001_initial")]
    operations = [migrations.RunPython(create_default, remove_default)]
