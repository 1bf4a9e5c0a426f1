module "pool" {
  source = "../../modules/pool"

  name                       = var.name
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.subnet_ids
  image_id                   = var.image_id
  instance_type              = var.instance_type
  client_public_key          = var.pool_public_key
  ssh_user                   = var.ssh_user
  work_root                  = var.work_root
  min_size                   = var.min_size
  max_size                   = var.max_size
  desired_capacity           = var.desired_capacity
  warm_pool_enabled          = var.warm_pool_enabled
  ingress_security_group_ids = var.runner_ingress_security_group_ids
  ingress_cidr_blocks        = var.runner_ingress_cidr_blocks

  # The provider's default_tags do not reach what an Auto Scaling group or a launch template
  # tags (members, their volumes and interfaces): passed to each module as well.
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

  name_prefix             = var.name
  region                  = var.region
  create_pool_policy      = true
  autoscaling_group_names = [module.pool.autoscaling_group_name]
  autoscaling_group_arns  = [module.pool.autoscaling_group_arn]
  ledger_table_arns       = [module.ledger.table_arn]
  attach_to_role_names    = var.runner_role_names
  tags                    = var.tags
}

locals {
  hook_config = {
    provider = {
      kind               = "ec2-pool"
      region             = var.region
      autoScalingGroup   = module.pool.autoscaling_group_name
      user               = module.pool.ssh_user
      sshPort            = module.pool.ssh_port
      identityFile       = var.pool_identity_file
      connect            = { address = var.connect_address }
      lease              = { ttlSeconds = var.lease_ttl_seconds }
      reuse              = { maxJobsPerVm = var.max_jobs_per_vm, maxVmAgeMinutes = var.max_vm_age_minutes, maxDiskPercent = var.max_disk_percent }
      scaleOut           = { enabled = var.scale_out_enabled }
      waitTimeoutSeconds = var.wait_timeout_seconds
    }
    remote = { workRoot = module.pool.work_root }
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
