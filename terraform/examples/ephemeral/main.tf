module "ephemeral" {
  source = "../../modules/ephemeral"

  name                       = var.name
  vpc_id                     = var.vpc_id
  image_id                   = var.image_id
  instance_type              = var.instance_types[0]
  ssh_port                   = var.ssh_port
  ingress_security_group_ids = var.runner_ingress_security_group_ids
  ingress_cidr_blocks        = var.runner_ingress_cidr_blocks

  # The provider's default_tags do not reach a launch template's tag specifications: passed to
  # each module as well.
  tags = var.tags
}

module "ledger" {
  source = "../../modules/ledger"

  name                = "${var.name}-fleet"
  deletion_protection = var.ledger_deletion_protection
  tags                = var.tags
}

module "runner_iam" {
  source = "../../modules/runner-iam"

  name_prefix         = var.name
  region              = var.region
  create_ec2_policy   = true
  image_ids           = [var.image_id]
  subnet_ids          = var.subnet_ids
  security_group_ids  = [module.ephemeral.security_group_id]
  launch_template_ids = [module.ephemeral.launch_template_id]
  allow_spot          = var.market != "on-demand"
  # This deployment's instances only: the pairs the hook puts on every launch (provider.tags below).
  scope_tags           = var.instance_tags
  instance_types       = var.instance_types
  ledger_table_arns    = [module.ledger.table_arn]
  attach_to_role_names = var.runner_role_names
  tags                 = var.tags
}

locals {
  hook_config = {
    provider = {
      kind = "ec2"
      # The template states IMDSv2, the encrypted root volume and the security group.
      launchTemplate        = { id = module.ephemeral.launch_template_id, version = "$Latest" }
      region                = var.region
      instanceTypes         = var.instance_types
      subnetIds             = var.subnet_ids
      market                = var.market
      user                  = var.ssh_user
      sshPort               = var.ssh_port
      connect               = { address = var.connect_address }
      maxLifetimeMinutes    = var.max_lifetime_minutes
      tags                  = var.instance_tags
      acquireTimeoutSeconds = var.acquire_timeout_seconds
    }
    remote = { workRoot = var.work_root }
    # The fleet ledger in DynamoDB: the caps and the budget hold across every runner host (unset ones left out).
    fleet = { for k, v in {
      ledger = { kind = "dynamodb", table = module.ledger.table_name, region = var.region }
      caps = { for k, v in {
        instances     = var.fleet_max_instances
        vcpus         = var.fleet_max_vcpus
        perRepository = var.fleet_max_instances_per_repository == null ? null : { instances = var.fleet_max_instances_per_repository }
      } : k => v if v != null }
      budget = var.fleet_budget_per_day_usd == null ? null : {
        perDayUsd = var.fleet_budget_per_day_usd
        timezone  = var.fleet_budget_timezone
        prices    = var.fleet_prices
      }
    } : k => v if v != null }
  }
}
